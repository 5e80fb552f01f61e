//! Grouped reservations, made deterministic: the product's row is held by
//! another transaction while requests queue, so what forms a group is not
//! left to the machine's timing. The inventory's grouping over its real
//! store on a real PostgreSQL, without HTTP in between.

use std::time::Duration;

use futures::future::join_all;
use inventory_service::{
    domain::ReservationStatus,
    group::Groups,
    store::{Reserved, Store, StoreError},
};
use uuid::Uuid;
use valerix_runtime::contract::domain::{Cents, ProductId, Quantity};
use valerix_testkit::{TestDb, eventually};

async fn store_with(db: &TestDb, product: &ProductId, stock: i32) -> Store {
    let store = Store::new(db.pool().await);
    store
        .upsert_product(product, "Hot", Cents::new(100).expect("price"), stock)
        .await
        .expect("product");
    store
}

/// Holds `product`'s row lock until the transaction is dropped or ended.
async fn hold_row(db: &TestDb, product: &ProductId) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let pool = db.pool().await;
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM inventory WHERE product_id = $1 FOR UPDATE")
        .bind(product.as_str())
        .execute(&mut *tx)
        .await
        .expect("lock the row");
    tx
}

fn quantity(n: i64) -> Quantity {
    Quantity::new(n).expect("quantity")
}

/// 1 request runs alone and waits for the row; the 30 that arrive meanwhile
/// are applied by the next statement, all together, in arrival order: the
/// ones that fit the 40 units left after the first are served, the rest
/// refused, never one more than the stock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_queue_behind_a_statement_are_applied_as_one_group() {
    let db = TestDb::new().await;
    let product = ProductId::parse("HOT").expect("id");
    let store = store_with(&db, &product, 45).await;
    let groups = Groups::new(store.clone(), true);
    let lock = hold_row(&db, &product).await;

    let first = {
        let (groups, product) = (groups.clone(), product.clone());
        tokio::spawn(async move { groups.reserve(Uuid::new_v4(), &product, quantity(5)).await })
    };
    // The first statement is under way (blocked on the row) before the
    // others arrive: they queue in the lane.
    crate::support::one_statement_waits_for_a_lock(
        store.pool(),
        "the first reserve waits for the row lock",
    )
    .await;
    // 30 orders of 1 to 3 units (60 asked for the 40 left), in this order.
    let asks: Vec<(Uuid, i64)> = (0..30).map(|i| (Uuid::new_v4(), 1 + i % 3)).collect();
    let mut queued = Vec::new();
    for (i, &(order, n)) in asks.iter().enumerate() {
        let (lane, id) = (groups.clone(), product.clone());
        queued.push(tokio::spawn(async move {
            lane.reserve(order, &id, quantity(n)).await
        }));
        // One at a time into the lane, so arrival order is known.
        eventually("the request queues", Duration::from_secs(10), || {
            let waiting = groups.waiting(&product);
            async move { (waiting == i + 1).then_some(()) }
        })
        .await;
    }
    lock.rollback().await.expect("release the row");

    let first = first.await.expect("join").expect("the first reserve");
    assert!(
        first.created && first.row.status == ReservationStatus::Reserved,
        "{first:?}"
    );
    let answers: Vec<Result<Reserved, StoreError>> = join_all(queued)
        .await
        .into_iter()
        .map(|j| j.expect("join"))
        .collect();
    let mut left = 40;
    for ((order, n), answer) in asks.iter().zip(&answers) {
        let answer = answer.as_ref().unwrap_or_else(|e| panic!("{order}: {e}"));
        let want = if *n <= left {
            ReservationStatus::Reserved
        } else {
            ReservationStatus::Rejected
        };
        assert_eq!(answer.row.status, want, "{order} ({n} of {left} left)");
        if *n <= left {
            left -= n;
        }
    }
    // The 30 were one statement: one transaction, one created_at.
    let groups_of: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM reservations GROUP BY created_at ORDER BY COUNT(*) DESC",
    )
    .fetch_all(store.pool())
    .await
    .expect("groups");
    assert_eq!(
        groups_of,
        vec![30, 1],
        "one group of 30 after the first alone"
    );
    let reserved: i32 =
        sqlx::query_scalar("SELECT reserved FROM inventory WHERE product_id = 'HOT'")
            .fetch_one(store.pool())
            .await
            .expect("reserved");
    assert_eq!(
        i64::from(reserved),
        45 - left,
        "the row holds exactly what was granted"
    );
}

/// A lane whose drain task dies with requests waiting (here: its runtime
/// shuts down while the statement waits for the row) is freed: the next
/// request for the product is served instead of waiting for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lane_whose_drain_dies_does_not_hang_its_product() {
    let db = TestDb::new().await;
    let product = ProductId::parse("HOT").expect("id");
    let store = store_with(&db, &product, 10).await;
    let groups = Groups::new(store.clone(), true);
    let lock = hold_row(&db, &product).await;

    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    for _ in 0..3 {
        let (groups, product) = (groups.clone(), product.clone());
        doomed.spawn(async move { groups.reserve(Uuid::new_v4(), &product, quantity(1)).await });
    }
    eventually(
        "two requests wait behind the first",
        Duration::from_secs(10),
        || {
            let waiting = groups.waiting(&product);
            async move { (waiting == 2).then_some(()) }
        },
    )
    .await;
    // Drops every task of that runtime, the lane's drain among them.
    tokio::task::spawn_blocking(move || drop(doomed))
        .await
        .expect("shut the runtime down");
    lock.rollback().await.expect("release the row");

    let served = tokio::time::timeout(
        Duration::from_secs(10),
        groups.reserve(Uuid::new_v4(), &product, quantity(1)),
    )
    .await
    .expect("the product is served again, not hung")
    .expect("a reservation");
    assert_eq!(served.row.status, ReservationStatus::Reserved);
}
