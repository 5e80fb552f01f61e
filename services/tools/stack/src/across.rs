//! SQL that reads more than one service's tables. Only the operator's tools
//! may (`valerix audit`, the benchmark's settlement check): each service
//! reads and writes its own tables alone.

/// The rows of CONFIRMED orders whose units inventory still holds: their
/// stock commit is queued, in flight, or lost for the sweep to find (`o`
/// the order, `r` its reservation).
pub const STOCK_COMMIT_OUTSTANDING_FROM: &str =
    "FROM orders o JOIN reservations r ON r.order_id = o.id
     WHERE r.status = 'RESERVED' AND o.status = 'CONFIRMED'";
