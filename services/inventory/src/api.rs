//! The inventory HTTP API.

use std::time::Duration;

use poem_openapi::{
    ApiResponse, Object, OpenApi, Tags,
    param::{Path, Query},
    payload::Json,
};
use sqlx::PgPool;
use uuid::Uuid;
use valerix_runtime::{
    ProblemResponse, Problems,
    contract::{
        domain::{Cents, ProductId, ProductName},
        health::{Health, HealthResponse},
        inventory::{
            CommitBatch, CommitBatchRequest, CommitRequest, NotHeld, Reservation, ReservationList,
            ReservationRequest,
        },
        problem::{INTERNAL, INVALID_BODY, INVALID_PARAMS, NOT_JSON, TOO_LARGE, UNAVAILABLE},
    },
    db, problem_set,
};

use crate::{
    NAME,
    domain::ReservationStatus,
    group::Groups,
    store::{ProductRow, ReservationRow, Store, StoreError},
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

/// A product and its stock.
#[derive(Debug, Object)]
pub struct Product {
    pub product_id: ProductId,
    pub name: String,
    /// Unit price in cents.
    pub price_cents: Cents,
    /// Units in the warehouse, including reserved ones.
    pub stock: i32,
    /// Units held by live reservations.
    pub reserved: i32,
    /// `stock - reserved`: what a new order can take.
    pub available: i32,
}

/// Create or restock a product.
#[derive(Debug, Object)]
#[oai(deny_unknown_fields, example)]
pub struct PutProduct {
    /// Up to 200 characters, no control characters.
    pub name: ProductName,
    /// Unit price in cents, at most 1000000 (10000.00).
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000")))]
    pub price_cents: i64,
    /// Units in the warehouse; not below what is reserved now.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub stock: i32,
}

impl poem_openapi::types::Example for PutProduct {
    fn example() -> Self {
        Self {
            name: ProductName::parse("Widget").expect("a valid example"),
            price_cents: 1999,
            stock: 1000,
        }
    }
}

#[derive(Debug, Object)]
pub struct ProductList {
    pub products: Vec<Product>,
}

#[derive(ApiResponse)]
enum ProductResponse {
    /// The product.
    #[oai(status = 200)]
    Ok(Json<Product>),
    /// The product was created.
    #[oai(status = 201)]
    Created(Json<Product>),
}

#[derive(ApiResponse)]
enum ReserveResponse {
    /// The order already had this reservation (first answer returned).
    #[oai(status = 200)]
    Existing(Json<Reservation>),
    /// Stock was reserved now.
    #[oai(status = 201)]
    Created(Json<Reservation>),
}

#[derive(ApiResponse)]
enum ReservationResponse {
    #[oai(status = 200)]
    Ok(Json<Reservation>),
}

impl From<ReservationRow> for Reservation {
    fn from(r: ReservationRow) -> Self {
        Self {
            order_id: r.order_id,
            status: r.status,
            product_id: r.product_id,
            quantity: r.quantity,
            unit_price_cents: r.unit_price_cents,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

impl TryFrom<ProductRow> for Product {
    type Error = ProblemResponse;
    fn try_from(r: ProductRow) -> Result<Self, Self::Error> {
        Ok(Self {
            product_id: ProductId::parse(&r.product_id).map_err(ProblemResponse::internal)?,
            price_cents: Cents::new(r.price_cents).map_err(ProblemResponse::internal)?,
            available: r.stock - r.reserved,
            name: r.name,
            stock: r.stock,
            reserved: r.reserved,
        })
    }
}

impl From<StoreError> for ProblemResponse {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::UnknownProduct(_) => Self::not_found("unknown-product", err),
            StoreError::NoReservation(_) => Self::not_found("no-reservation", err),
            StoreError::Mismatch { .. } => Self::conflict("reservation-mismatch", err),
            StoreError::WrongState { status, .. } => {
                let kind = format!("reservation-{}", status.as_str().to_lowercase());
                Self::conflict(&kind, err)
            }
            StoreError::StockBelowReserved { .. } => Self::conflict("stock-below-reserved", err),
            StoreError::GroupLost => Self::internal(err),
            StoreError::Db(e) => e.into(),
        }
    }
}

problem_set!(ListErrors { 500 => INTERNAL, 503 => UNAVAILABLE });
problem_set!(GetErrors {
    400 => INVALID_PARAMS,
    404 => "No product has this id (`unknown-product`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(PutErrors {
    400 => INVALID_BODY,
    409 => "The new stock is below the units reserved now (`stock-below-reserved`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(ReserveErrors {
    400 => INVALID_BODY,
    404 => "No product has this id (`unknown-product`).",
    409 => "Not enough stock (`out-of-stock`); the order's reservation was released \
            (`reservation-released`) or is for another product or quantity \
            (`reservation-mismatch`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(ReleaseErrors {
    400 => INVALID_BODY,
    404 => "No product has this id (`unknown-product`).",
    409 => "The reservation is for another product or quantity (`reservation-mismatch`), \
            or already committed (`reservation-committed`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(CommitErrors {
    400 => INVALID_BODY,
    404 => "The order has no reservation (`no-reservation`).",
    409 => "The reservation is not held: released or rejected (`reservation-released`, \
            `reservation-rejected`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(CommitBatchErrors {
    400 => INVALID_BODY,
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(HeldErrors {
    400 => INVALID_PARAMS,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(ReservationErrors {
    400 => INVALID_PARAMS,
    404 => "The order has no reservation (`no-reservation`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});

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
