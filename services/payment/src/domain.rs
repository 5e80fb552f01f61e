//! What a payment is and the states it can be in.

use poem_openapi::Enum;

// As stored in `payments.status`: a value the database holds that is not
// one of these fails the read (sqlx's decode), it is never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, sqlx::Type)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// The charge went through.
    Completed,
    /// The charge was refused (see `decline_reason`).
    Declined,
    /// The charge went through and was paid back.
    Refunded,
    /// The order was given up before any charge: later charges are refused.
    Voided,
    /// Not decided yet.
    Pending,
}

impl PaymentStatus {
    pub const ALL: [PaymentStatus; 5] = [
        Self::Completed,
        Self::Declined,
        Self::Refunded,
        Self::Voided,
        Self::Pending,
    ];
}
