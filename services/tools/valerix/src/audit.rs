//! `valerix audit`: the invariants of the order flow, checked against the
//! database. Each query returns the rows that break one invariant.

use std::time::Duration;

use sqlx::PgPool;
use valerix_stack::across::STOCK_COMMIT_OUTSTANDING_FROM as OUTSTANDING;

#[derive(Debug, Clone)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

#[derive(Debug, Default)]
pub struct Report {
    /// Orders per status.
    pub orders: Vec<(String, i64)>,
    pub violations: Vec<Violation>,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.violations.is_empty()
    }

    pub fn total_orders(&self) -> i64 {
        self.orders.iter().map(|(_, n)| n).sum()
    }
}

/// Each invariant: its name and a query yielding one text line per breach.
const CHECKS: &[(&str, &str)] = &[
    (
        "reserved equals live reservations, within stock",
        "SELECT format('%s: stock %s, reserved %s, live reservations %s', i.product_id, i.stock, i.reserved, COALESCE(r.live, 0))
         FROM inventory i
         LEFT JOIN (SELECT product_id, SUM(quantity) AS live FROM reservations WHERE status = 'RESERVED' GROUP BY product_id) r
           ON r.product_id = i.product_id
         WHERE i.reserved <> COALESCE(r.live, 0) OR i.reserved > i.stock OR i.reserved < 0 OR i.stock < 0",
    ),
    (
        "a CONFIRMED order has one completed payment of its amount, priced as its reservation, and holds its units (committed, or held until its queued commit)",
        "SELECT format('order %s: payment %s (%s of %s), reservation %s at %s cents', o.id,
                       COALESCE(p.status, 'none'), p.amount, o.amount, COALESCE(r.status, 'none'),
                       r.unit_price_cents)
         FROM orders o
         LEFT JOIN payments p ON p.order_id = o.id
         LEFT JOIN reservations r ON r.order_id = o.id
         WHERE o.status = 'CONFIRMED'
           AND (p.status IS DISTINCT FROM 'COMPLETED' OR p.amount IS DISTINCT FROM o.amount
                OR o.amount IS DISTINCT FROM r.unit_price_cents * o.quantity / 100.0
                OR r.status IS NULL OR r.status NOT IN ('COMMITTED', 'RESERVED')
                OR r.quantity <> o.quantity)",
    ),
    (
        "a FAILED order holds no stock and kept no money",
        "SELECT format('order %s (%s): payment %s, reservation %s', o.id, o.failure_reason,
                       COALESCE(p.status, 'none'), COALESCE(r.status, 'none'))
         FROM orders o
         LEFT JOIN payments p ON p.order_id = o.id
         LEFT JOIN reservations r ON r.order_id = o.id
         WHERE o.status = 'FAILED' AND (r.status IN ('RESERVED', 'COMMITTED') OR p.status = 'COMPLETED')",
    ),
    (
        "stock is only held or sold for an order that exists",
        "SELECT format('reservation %s is %s but there is no such order', r.order_id, r.status)
         FROM reservations r LEFT JOIN orders o ON o.id = r.order_id
         WHERE o.id IS NULL AND r.status IN ('RESERVED', 'COMMITTED')",
    ),
];

/// Runs every check. With `max_pending`, an order unsettled for longer is a
/// violation too (`Duration::ZERO`: nothing may be pending at all).
pub async fn audit(pool: &PgPool, max_pending: Option<Duration>) -> Result<Report, sqlx::Error> {
    let mut report = Report {
        orders: sqlx::query_as(
            "SELECT status::TEXT, COUNT(*) FROM orders GROUP BY status ORDER BY status",
        )
        .fetch_all(pool)
        .await?,
        violations: Vec::new(),
    };
    for (invariant, sql) in CHECKS {
        let rows: Vec<(String,)> = sqlx::query_as(sql).fetch_all(pool).await?;
        report.violations.extend(
            rows.into_iter()
                .map(|(detail,)| Violation { invariant, detail }),
        );
    }
    if let Some(bound) = max_pending {
        let bounded = [
            (
                "every order settles within the bound",
                format!(
                    "SELECT format('order %s is %s after %s s', id, status, round(EXTRACT(EPOCH FROM NOW() - created_at)))
                     FROM orders
                     WHERE status IN {}
                       AND created_at <= NOW() - make_interval(secs => $1)",
                    order_service::domain::OrderStatus::unsettled_sql()
                ),
            ),
            (
                "a CONFIRMED order's stock is committed within the bound",
                format!(
                    "SELECT format('order %s is CONFIRMED, its stock still held (not committed) after %s s',
                            o.id, round(EXTRACT(EPOCH FROM NOW() - o.updated_at)))
                     {OUTSTANDING} AND o.updated_at <= NOW() - make_interval(secs => $1)"
                ),
            ),
        ];
        for (invariant, sql) in bounded {
            let rows: Vec<(String,)> = sqlx::query_as(&sql)
                .bind(bound.as_secs_f64())
                .fetch_all(pool)
                .await?;
            report.violations.extend(
                rows.into_iter()
                    .map(|(detail,)| Violation { invariant, detail }),
            );
        }
    }
    Ok(report)
}

/// How many CONFIRMED orders still wait for their stock commit (the order
/// service commits after the answer, in batches).
pub async fn outstanding_stock_commits(pool: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(&format!("SELECT COUNT(*) {OUTSTANDING}"))
        .fetch_one(pool)
        .await
}

/// Waits until no CONFIRMED order waits for its stock commit; false when
/// some still do at `deadline`.
pub async fn wait_for_stock_commits(
    pool: &PgPool,
    deadline: tokio::time::Instant,
) -> Result<bool, sqlx::Error> {
    loop {
        if outstanding_stock_commits(pool).await? == 0 {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Prints the report the way `valerix audit` shows it.
pub fn print(report: &Report) {
    println!("orders: {}", report.total_orders());
    for (status, n) in &report.orders {
        println!("  {status:<18} {n}");
    }
    if report.is_clean() {
        println!("audit: clean — every invariant holds");
        return;
    }
    println!("audit: {} violation(s)", report.violations.len());
    for v in &report.violations {
        println!("  [{}] {}", v.invariant, v.detail);
    }
}
