//! The inventory HTTP API: the route table ([`InventoryApi`]); what the
//! routes answer is in `answers`.

mod answers;

use std::time::Duration;

use poem_openapi::{
    OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sqlx::PgPool;
use uuid::Uuid;
use valerix_runtime::{
    ProblemResponse, Problems,
    contract::{
        domain::{Cents, ProductId},
        health::{Health, HealthResponse},
        inventory::{
            CommitBatch, CommitBatchRequest, CommitRequest, NotHeld, Reservation, ReservationList,
            ReservationRequest,
        },
    },
    db,
};

use crate::{
    NAME,
    domain::ReservationStatus,
    group::Groups,
    store::{Store, StoreError},
};
use answers::{
    CommitBatchErrors, CommitErrors, GetErrors, HeldErrors, ListErrors, Product, ProductList,
    ProductResponse, PutErrors, PutProduct, ReleaseErrors, ReservationErrors, ReservationResponse,
    ReserveErrors, ReserveResponse,
};

#[derive(Tags)]
enum Tag {
    /// Stock per product
    Inventory,
    /// Reservations keyed by order: reserve, release, commit
    Reservations,
    /// Liveness and dependencies
    Health,
}

type Answer<T, E> = Result<T, Problems<E>>;

pub struct InventoryApi {
    store: Store,
    /// Reserves and commits go through the groups (per product).
    groups: Groups,
}

impl InventoryApi {
    /// `grouped`: reserves and commits applied in groups (else one by one).
    pub fn new(pool: PgPool, grouped: bool) -> Self {
        let store = Store::new(pool);
        Self {
            groups: Groups::new(store.clone(), grouped),
            store,
        }
    }

    /// An instance that never touches a database, to render the spec.
    pub fn spec_only() -> Self {
        Self::new(db::lazy_pool(), true)
    }
}

#[OpenApi]
impl InventoryApi {
    /// Health: the service and its database.
    #[oai(path = "/health", method = "get", tag = "Tag::Health")]
    async fn health(&self) -> HealthResponse {
        let db_up = db::ping(self.store.pool(), Duration::from_secs(1)).await;
        Health::new(NAME).database(db_up).into_response()
    }

    /// All products with their stock.
    #[oai(path = "/inventory", method = "get", tag = "Tag::Inventory")]
    async fn list(&self) -> Answer<Json<ProductList>, ListErrors> {
        let products = self
            .store
            .products(1000)
            .await?
            .into_iter()
            .map(Product::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Json(ProductList { products }))
    }

    /// Stock of one product.
    #[oai(
        path = "/inventory/:product_id",
        method = "get",
        tag = "Tag::Inventory"
    )]
    async fn get(&self, product_id: Path<ProductId>) -> Answer<Json<Product>, GetErrors> {
        Ok(Json(self.store.product(&product_id).await?.try_into()?))
    }

    /// Create a product or set its name, price and stock.
    #[oai(
        path = "/inventory/:product_id",
        method = "put",
        tag = "Tag::Inventory"
    )]
    async fn put(
        &self,
        product_id: Path<ProductId>,
        body: Json<PutProduct>,
    ) -> Answer<ProductResponse, PutErrors> {
        let price = Cents::new(body.price_cents).map_err(ProblemResponse::internal)?;
        let (row, created) = self
            .store
            .upsert_product(&product_id, body.name.as_str(), price, body.stock)
            .await?;
        let product = row.try_into()?;
        Ok(if created {
            ProductResponse::Created(Json(product))
        } else {
            ProductResponse::Ok(Json(product))
        })
    }

    /// Reserve stock for an order.
    ///
    /// 201 when reserved now, 200 when the order already had it, 409
    /// `out-of-stock` when there is not enough.
    #[oai(
        path = "/inventory/reserve",
        method = "post",
        tag = "Tag::Reservations"
    )]
    async fn reserve(
        &self,
        body: Json<ReservationRequest>,
    ) -> Answer<ReserveResponse, ReserveErrors> {
        let r = self
            .groups
            .reserve(body.order_id, &body.product_id, body.quantity)
            .await?;
        match r.row.status {
            ReservationStatus::Rejected => Err(ProblemResponse::conflict(
                "out-of-stock",
                format!(
                    "not enough stock of {} for {} units",
                    r.row.product_id, r.row.quantity
                ),
            )
            .into()),
            ReservationStatus::Released => Err(ProblemResponse::conflict(
                "reservation-released",
                format!("the reservation for order {} was released", r.row.order_id),
            )
            .into()),
            _ if r.created => Ok(ReserveResponse::Created(Json(r.row.into()))),
            _ => Ok(ReserveResponse::Existing(Json(r.row.into()))),
        }
    }

    /// Release an order's reservation.
    ///
    /// Without one, records the release so a late reserve for the order
    /// cannot take stock.
    #[oai(
        path = "/inventory/release",
        method = "post",
        tag = "Tag::Reservations"
    )]
    async fn release(
        &self,
        body: Json<ReservationRequest>,
    ) -> Answer<ReservationResponse, ReleaseErrors> {
        let row = self
            .store
            .release(body.order_id, &body.product_id, body.quantity)
            .await?;
        Ok(ReservationResponse::Ok(Json(row.into())))
    }

    /// Commit an order's reservation: the units leave stock.
    #[oai(path = "/inventory/commit", method = "post", tag = "Tag::Reservations")]
    async fn commit(&self, body: Json<CommitRequest>) -> Answer<ReservationResponse, CommitErrors> {
        let row = self.groups.commit(body.order_id).await?;
        Ok(ReservationResponse::Ok(Json(row.into())))
    }

    /// Commit several orders' reservations at once.
    ///
    /// The order service's deferred commits: each order is committed as by
    /// `POST /inventory/commit` (and in the same groups); the answer sorts
    /// the orders by what became of them instead of failing on the first
    /// that was not held.
    #[oai(
        path = "/inventory/commits",
        method = "post",
        tag = "Tag::Reservations"
    )]
    async fn commit_batch(
        &self,
        body: Json<CommitBatchRequest>,
    ) -> Answer<Json<CommitBatch>, CommitBatchErrors> {
        let mut ids = body.0.order_ids;
        ids.sort_unstable();
        ids.dedup();
        let answers = futures::future::join_all(ids.iter().map(|id| self.groups.commit(*id))).await;
        let mut batch = CommitBatch {
            committed: Vec::new(),
            not_held: Vec::new(),
            missing: Vec::new(),
        };
        for (order_id, answer) in ids.into_iter().zip(answers) {
            match answer {
                Ok(_) => batch.committed.push(order_id),
                Err(StoreError::WrongState { status, .. }) => {
                    batch.not_held.push(NotHeld { order_id, status })
                }
                Err(StoreError::NoReservation(_)) => batch.missing.push(order_id),
                Err(err) => return Err(err.into()),
            }
        }
        Ok(Json(batch))
    }

    /// Reservations still held (RESERVED) after `older_than_secs`, oldest
    /// first: the orders in flight, and any whose commit is overdue.
    #[oai(
        path = "/inventory/reservations/held",
        method = "get",
        tag = "Tag::Reservations"
    )]
    async fn held(
        &self,
        /// Only reservations unchanged for at least this many seconds.
        #[oai(default, validator(minimum(value = "0"), maximum(value = "86400")))]
        older_than_secs: Query<u32>,
        /// At most this many, 1 to 1000.
        #[oai(
            default = "default_held_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<i64>,
    ) -> Answer<Json<ReservationList>, HeldErrors> {
        let rows = self
            .store
            .held_longer_than(Duration::from_secs(older_than_secs.0.into()), limit.0)
            .await?;
        Ok(Json(ReservationList {
            reservations: rows.into_iter().map(Reservation::from).collect(),
        }))
    }

    /// An order's reservation.
    #[oai(
        path = "/inventory/reservations/:order_id",
        method = "get",
        tag = "Tag::Reservations"
    )]
    async fn reservation(
        &self,
        order_id: Path<Uuid>,
    ) -> Answer<ReservationResponse, ReservationErrors> {
        let row = self.store.reservation(order_id.0).await?;
        Ok(ReservationResponse::Ok(Json(row.into())))
    }
}

fn default_held_limit() -> i64 {
    100
}
