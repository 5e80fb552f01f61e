//! What a reservation is and the states it can be in.

use poem_openapi::Enum;

// As stored in `reservations.status`: a value the database holds that is
// not one of these fails the read (sqlx's decode), it is never guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, sqlx::Type)]
#[oai(rename_all = "SCREAMING_SNAKE_CASE")]
#[sqlx(type_name = "varchar", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ReservationStatus {
    /// Stock is held for the order.
    Reserved,
    /// The order was confirmed: the units left stock.
    Committed,
    /// Given back (or fenced off before any reserve arrived).
    Released,
    /// There was not enough stock.
    Rejected,
}

impl ReservationStatus {
    pub const ALL: [ReservationStatus; 4] = [
        Self::Reserved,
        Self::Committed,
        Self::Released,
        Self::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "RESERVED",
            Self::Committed => "COMMITTED",
            Self::Released => "RELEASED",
            Self::Rejected => "REJECTED",
        }
    }
}

impl std::fmt::Display for ReservationStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
