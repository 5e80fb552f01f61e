//! What an order is and the states it can be in.

use poem_openapi::Enum;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
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

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::PendingInventory,
            Self::PendingPayment,
            Self::Confirmed,
            Self::Failed,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }

    pub fn is_settled(self) -> bool {
        matches!(self, Self::Confirmed | Self::Failed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// Not enough stock for the quantity.
    OutOfStock,
    /// The payment was declined; the stock was released.
    PaymentDeclined,
    /// Not settled before the deadline; stock released, payment voided or refunded.
    Expired,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OutOfStock => "OUT_OF_STOCK",
            Self::PaymentDeclined => "PAYMENT_DECLINED",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Self::OutOfStock, Self::PaymentDeclined, Self::Expired]
            .into_iter()
            .find(|v| v.as_str() == s)
    }
}

/// Where the saga left an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Confirmed,
    Failed(FailureReason),
    /// Not settled; the reconciler picks it up again.
    Pending(OrderStatus),
}
