//! What the inventory's routes answer: the product types, the answers'
//! statuses, the rows they are made from, and the problems each operation
//! documents.

use poem_openapi::{ApiResponse, Object, payload::Json};
use valerix_runtime::{
    ProblemResponse,
    contract::{
        domain::{Cents, ProductId, ProductName},
        inventory::Reservation,
        problem::{INTERNAL, INVALID_BODY, INVALID_PARAMS, NOT_JSON, TOO_LARGE, UNAVAILABLE},
    },
    problem_set,
};

use crate::store::{ProductRow, ReservationRow, StoreError};

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
pub(super) enum ProductResponse {
    /// The product.
    #[oai(status = 200)]
    Ok(Json<Product>),
    /// The product was created.
    #[oai(status = 201)]
    Created(Json<Product>),
}

#[derive(ApiResponse)]
pub(super) enum ReserveResponse {
    /// The order already had this reservation (first answer returned).
    #[oai(status = 200)]
    Existing(Json<Reservation>),
    /// Stock was reserved now.
    #[oai(status = 201)]
    Created(Json<Reservation>),
}

#[derive(ApiResponse)]
pub(super) enum ReservationResponse {
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

problem_set!(pub(super) ListErrors { 500 => INTERNAL, 503 => UNAVAILABLE });
problem_set!(pub(super) GetErrors {
    400 => INVALID_PARAMS,
    404 => "No product has this id (`unknown-product`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) PutErrors {
    400 => INVALID_BODY,
    409 => "The new stock is below the units reserved now (`stock-below-reserved`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) ReserveErrors {
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
problem_set!(pub(super) ReleaseErrors {
    400 => INVALID_BODY,
    404 => "No product has this id (`unknown-product`).",
    409 => "The reservation is for another product or quantity (`reservation-mismatch`), \
            or already committed (`reservation-committed`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) CommitErrors {
    400 => INVALID_BODY,
    404 => "The order has no reservation (`no-reservation`).",
    409 => "The reservation is not held: released or rejected (`reservation-released`, \
            `reservation-rejected`).",
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) CommitBatchErrors {
    400 => INVALID_BODY,
    413 => TOO_LARGE,
    415 => NOT_JSON,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) HeldErrors {
    400 => INVALID_PARAMS,
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
problem_set!(pub(super) ReservationErrors {
    400 => INVALID_PARAMS,
    404 => "The order has no reservation (`no-reservation`).",
    500 => INTERNAL,
    503 => UNAVAILABLE,
});
