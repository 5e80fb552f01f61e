//! What an order is and the states it can be in.

use poem_openapi::Enum;

// As stored in `orders.status`: a value the database holds that is not one
// of these fails the read (sqlx's decode), it is never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, sqlx::Type)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum OrderStatus {
    /// Stored; stock and payment not settled yet.
    Pending,
    /// The inventory service did not answer; the reconciler will retry.
    PendingInventory,
    /// Stock is held; the payment outcome is not known yet.
    PendingPayment,
    /// Stock committed and payment completed.
    Confirmed,
    /// Settled without a sale; see `failure_reason`.
    Failed,
}

impl OrderStatus {
    pub const UNSETTLED: [OrderStatus; 3] =
        [Self::Pending, Self::PendingInventory, Self::PendingPayment];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "PENDING",
            Self::PendingInventory => "PENDING_INVENTORY",
            Self::PendingPayment => "PENDING_PAYMENT",
            Self::Confirmed => "CONFIRMED",
            Self::Failed => "FAILED",
        }
    }

    pub const ALL: [OrderStatus; 5] = [
        Self::Pending,
        Self::PendingInventory,
        Self::PendingPayment,
        Self::Confirmed,
        Self::Failed,
    ];

    /// `('PENDING', 'PENDING_INVENTORY', 'PENDING_PAYMENT')`, for SQL that
    /// must match the partial index `orders_unsettled` (a bound array
    /// parameter would keep the query planner from using it).
    pub fn unsettled_sql() -> String {
        let quoted: Vec<String> = Self::UNSETTLED
            .iter()
            .map(|s| format!("'{}'", s.as_str()))
            .collect();
        format!("({})", quoted.join(", "))
    }

    pub fn is_settled(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum, sqlx::Type)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// Not enough stock for the quantity.
    OutOfStock,
    /// The payment was declined; the stock was released.
    PaymentDeclined,
    /// Not settled before the deadline; stock released, payment voided or refunded.
    Expired,
}

impl std::fmt::Display for OrderStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "OUT_OF_STOCK",
            Self::PaymentDeclined => "PAYMENT_DECLINED",
            Self::Expired => "EXPIRED",
        }
    }

    pub const ALL: [FailureReason; 3] = [Self::OutOfStock, Self::PaymentDeclined, Self::Expired];
}

/// Where the saga left an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    Failed(FailureReason),
    /// Not settled; the reconciler picks it up again.
    Pending(OrderStatus),
}
