//! Grouped writes of the order service (creates, settlements) and the
//! payment service (charges), made deterministic as the reservation groups
//! are: a row the first statement needs is held by another transaction
//! while the rest queue, so what forms a group is not left to timing. Each
//! request in a group must get exactly the answer it would have had alone:
//! repeats, unknown products and orders, settled orders and mismatched
//! amounts included. The services' real code on a real PostgreSQL, without
//! HTTP in between.

use std::{future::Future, time::Duration};

use futures::future::join_all;
use order_service::{
    domain::{FailureReason, OrderStatus},
    store::{Idempotency, NewOrder, Settlement, Store as Orders, StoreError as OrderError},
    writes::Writes,
};
use payment_service::{
    charges::Charges,
    domain::PaymentStatus,
    store::{Store as Payments, StoreError as PaymentError},
};
use uuid::Uuid;
use valerix_runtime::contract::domain::{Cents, ProductId, Quantity};
use valerix_testkit::{TestDb, eventually};

use crate::support::one_statement_waits_for_a_lock;

async fn product(db: &TestDb, id: &str, price_cents: i64) -> ProductId {
    let id = ProductId::parse(id).expect("id");
    inventory_service::store::Store::new(db.pool().await)
        .upsert_product(
            &id,
            id.as_str(),
            Cents::new(price_cents).expect("price"),
            1000,
        )
        .await
        .expect("product");
    id
}

fn new_order(product: &ProductId, quantity: i64) -> NewOrder {
    NewOrder {
        user_id: None,
        product_id: product.clone(),
        quantity: Quantity::new(quantity).expect("quantity"),
    }
}

fn settlement((id, status, reason): (Uuid, OrderStatus, Option<FailureReason>)) -> Settlement {
    Settlement {
        id,
        status,
        reason,
        amount_cents: None,
    }
}

/// `n` new orders of one unit of `product`.
async fn new_orders(orders: &Orders, product: &ProductId, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let created = orders
            .create(&new_order(product, 1), &Idempotency::None)
            .await;
        ids.push(created.expect("order").order.id);
    }
    ids
}

/// Holds the row that `lock` selects, starts `first` (whose statement needs
/// that row), queues each of `rest` behind it one at a time (so their
/// arrival order is known; `waiting` counts the queue), then lets the row
/// go: the first statement runs alone, the rest as the next group. Returns
/// the answers, in order.
async fn behind_a_held_row<T, R>(
    db: &TestDb,
    lock: &str,
    first: impl Future<Output = T> + Send + 'static,
    rest: Vec<impl Future<Output = R> + Send + 'static>,
    waiting: impl Fn() -> usize,
) -> (T, Vec<R>)
where
    T: Send + 'static,
    R: Send + 'static,
{
    let pool = db.pool().await;
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(lock)
        .execute(&mut *tx)
        .await
        .expect("lock the row");
    let first = tokio::spawn(first);
    one_statement_waits_for_a_lock(&pool, "the first statement waits for the row").await;
    let mut queued = Vec::new();
    for (i, request) in rest.into_iter().enumerate() {
        queued.push(tokio::spawn(request));
        eventually("the request queues", Duration::from_secs(10), || {
            let w = waiting();
            async move { (w == i + 1).then_some(()) }
        })
        .await;
    }
    tx.rollback().await.expect("release the row");
    let first = first.await.expect("join");
    let rest = join_all(queued)
        .await
        .into_iter()
        .map(|j| j.expect("join"))
        .collect();
    (first, rest)
}

/// The first create waits (the product's row is locked, which its foreign
/// key check needs); 20 arrive meanwhile and are stored by one statement:
/// new orders stored like any other, a key claimed once, a repeated key
/// answered with the first order, a key used before answered with its old
/// order, an unknown product refused; an Order-Id stored once, a repeat of
/// it answered with its order, another order under a taken id refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_that_queue_behind_a_statement_are_stored_as_one_group() {
    let db = TestDb::new().await;
    let hot = product(&db, "HOT", 250).await;
    let orders = Orders::new(db.pool().await);
    let before = orders
        .create(&new_order(&hot, 1), &Idempotency::Key("k-old".into()))
        .await
        .expect("an order of yesterday")
        .order;
    let writes = Writes::new(orders.clone(), true);
    let unknown = ProductId::parse("NOPE").expect("id");
    let key = |k: &str| Idempotency::Key(k.to_owned());
    let chosen = Uuid::new_v4();
    let mut asks: Vec<(NewOrder, Idempotency)> = (1..=16)
        .map(|q| (new_order(&hot, q), Idempotency::None))
        .collect();
    asks.push((new_order(&hot, 2), key("k-a")));
    asks.push((new_order(&hot, 2), key("k-a")));
    asks.push((new_order(&hot, 1), key("k-old")));
    asks.push((new_order(&unknown, 1), Idempotency::None));
    asks.push((new_order(&hot, 3), Idempotency::OrderId(chosen)));
    asks.push((new_order(&hot, 3), Idempotency::OrderId(chosen)));
    asks.push((new_order(&hot, 1), Idempotency::OrderId(before.id)));
    asks.push((new_order(&hot, 5), Idempotency::OrderId(before.id)));
    let first = {
        let (w, new) = (writes.clone(), new_order(&hot, 1));
        async move { w.create(&new, &Idempotency::None).await }
    };
    let rest = asks
        .into_iter()
        .map(|(new, idempotency)| {
            let w = writes.clone();
            async move { w.create(&new, &idempotency).await }
        })
        .collect();
    let (first, answers) = behind_a_held_row(
        &db,
        "SELECT 1 FROM inventory WHERE product_id = 'HOT' FOR UPDATE",
        first,
        rest,
        || writes.waiting().0,
    )
    .await;

    assert!(!first.expect("the first create").replayed);
    for (q, answer) in (1..=16).zip(&answers) {
        let created = answer.as_ref().expect("a new order");
        assert!(!created.replayed);
        assert_eq!(created.order.status, OrderStatus::Pending);
        assert_eq!(created.order.quantity, q);
        assert_eq!(
            created.order.amount_cents, None,
            "unpriced until inventory answers the reservation"
        );
    }
    let (a1, a2) = (
        answers[16].as_ref().expect("k-a"),
        answers[17].as_ref().expect("k-a again"),
    );
    assert!(!a1.replayed && a2.replayed, "the key is claimed once");
    assert_eq!(a1.order.id, a2.order.id, "a repeat gets the first order");
    let old = answers[18].as_ref().expect("k-old again");
    assert!(old.replayed);
    assert_eq!(
        old.order.id, before.id,
        "a key used before answers with its order"
    );
    assert!(
        matches!(answers[19], Err(OrderError::UnknownProduct(_))),
        "{:?}",
        answers[19].as_ref().map(|c| c.order.id)
    );
    let (c1, c2) = (
        answers[20].as_ref().expect("an Order-Id"),
        answers[21].as_ref().expect("the Order-Id again"),
    );
    assert!(!c1.replayed && c2.replayed, "the order is stored once");
    assert_eq!((c1.order.id, c2.order.id), (chosen, chosen));
    let taken = answers[22].as_ref().expect("the old order's id");
    assert!(taken.replayed);
    assert_eq!(taken.order.id, before.id);
    assert!(
        matches!(answers[23], Err(OrderError::IdReused(id)) if id == before.id),
        "another order under a taken id is refused: {:?}",
        answers[23].as_ref().map(|c| c.order.id)
    );

    // The 16 new orders, k-a's and the Order-Id's were one statement: one
    // transaction, one created_at; nothing else was stored.
    let groups: Vec<i64> = sqlx::query_scalar(
        "SELECT COUNT(*) FROM orders WHERE id <> $1 GROUP BY created_at ORDER BY COUNT(*) DESC",
    )
    .bind(before.id)
    .fetch_all(orders.pool())
    .await
    .expect("groups");
    assert_eq!(groups, vec![18, 1], "one group of 18 after the first alone");
    let key_order: Uuid =
        sqlx::query_scalar("SELECT order_id FROM idempotency_keys WHERE key = 'k-a'")
            .fetch_one(orders.pool())
            .await
            .expect("k-a stored");
    assert_eq!(key_order, a1.order.id);
}

/// Settlements queue behind one that waits for its order's row; the next
/// statement settles them together, and leaves alone (as the single path
/// does) an order that was settled already and a second settlement of the
/// same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_that_queue_are_applied_as_one_group_and_settle_once() {
    let db = TestDb::new().await;
    let hot = product(&db, "HOT", 100).await;
    let orders = Orders::new(db.pool().await);
    let ids = new_orders(&orders, &hot, 12).await;
    orders
        .settle(&settlement((
            ids[11],
            OrderStatus::Failed,
            Some(FailureReason::OutOfStock),
        )))
        .await
        .expect("settled before");
    let writes = Writes::new(orders.clone(), true);
    let mut asks: Vec<(Uuid, OrderStatus, Option<FailureReason>)> = ids[1..10]
        .iter()
        .map(|&id| (id, OrderStatus::Confirmed, None))
        .collect();
    asks.push((
        ids[10],
        OrderStatus::Failed,
        Some(FailureReason::PaymentDeclined),
    ));
    asks.push((ids[11], OrderStatus::Confirmed, None));
    asks.push((ids[10], OrderStatus::Confirmed, None));
    let settle = |(id, status, reason)| {
        let w = writes.clone();
        async move { w.settle(settlement((id, status, reason))).await }
    };
    let (first, answers) = behind_a_held_row(
        &db,
        &format!("SELECT 1 FROM orders WHERE id = '{}' FOR UPDATE", ids[0]),
        settle((ids[0], OrderStatus::Confirmed, None)),
        asks.into_iter().map(settle).collect(),
        || writes.waiting().1,
    )
    .await;

    let (row, now) = first.expect("the first settlement");
    assert!(now && row.status == OrderStatus::Confirmed);
    let answers: Vec<_> = answers.into_iter().map(|a| a.expect("settle")).collect();
    for (row, now) in &answers[..9] {
        assert!(*now, "{}", row.id);
        assert_eq!(row.status, OrderStatus::Confirmed);
    }
    let (declined, now) = &answers[9];
    assert!(*now);
    assert_eq!(declined.status, OrderStatus::Failed);
    assert_eq!(
        declined.failure_reason,
        Some(FailureReason::PaymentDeclined)
    );
    let (before, now) = &answers[10];
    assert!(!now, "settled before: not again");
    assert_eq!(before.status, OrderStatus::Failed);
    assert_eq!(before.failure_reason, Some(FailureReason::OutOfStock));
    let (again, now) = &answers[11];
    assert!(!now, "a second settlement of one order changes nothing");
    assert_eq!(again.status, OrderStatus::Failed, "the first one stands");

    let stamps: i64 =
        sqlx::query_scalar("SELECT COUNT(DISTINCT updated_at) FROM orders WHERE id = ANY($1)")
            .bind(&ids[1..11])
            .fetch_one(orders.pool())
            .await
            .expect("stamps");
    assert_eq!(stamps, 1, "the ten were settled by one statement");
}

/// Charges queue behind one that waits for its order's row; the next
/// statement records the first charges together, and the single path
/// answers the rest: a repeat with its first payment, another amount with
/// the mismatch. A group holding an unknown order is refused as a whole
/// and charged one at a time, so only that order is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn charges_that_queue_are_recorded_as_one_group_with_every_answer_its_own() {
    let db = TestDb::new().await;
    let hot = product(&db, "HOT", 100).await;
    let orders = Orders::new(db.pool().await);
    let ids = new_orders(&orders, &hot, 11).await;
    let payments = Payments::new(db.pool().await);
    payments
        .charge(ids[9], 100, None)
        .await
        .expect("charged before");
    let charges = Charges::new(payments.clone(), true);

    let charge = |(id, amount, reason): (Uuid, i64, Option<&'static str>)| {
        let c = charges.clone();
        async move { c.charge(id, amount, reason).await }
    };
    let lock_order = |id: Uuid| format!("SELECT 1 FROM orders WHERE id = '{id}' FOR UPDATE");

    // Round 1: first charges, a declined one, repeats.
    let mut asks: Vec<(Uuid, i64, Option<&'static str>)> =
        ids[1..6].iter().map(|&id| (id, 100, None)).collect();
    asks.push((ids[6], 100, Some("AMOUNT_LIMIT")));
    asks.push((ids[9], 100, None));
    asks.push((ids[9], 999, None));
    let (first, answers) = behind_a_held_row(
        &db,
        &lock_order(ids[0]),
        charge((ids[0], 100, None)),
        asks.into_iter().map(charge).collect(),
        || charges.waiting(),
    )
    .await;
    let (paid, created) = first.expect("the first charge");
    assert!(created && paid.status == PaymentStatus::Completed);
    for answer in &answers[..5] {
        let (row, created) = answer.as_ref().expect("charged");
        assert!(*created);
        assert_eq!(
            (row.status, row.amount_cents),
            (PaymentStatus::Completed, 100)
        );
    }
    let (declined, created) = answers[5].as_ref().expect("declined");
    assert!(*created);
    assert_eq!(declined.status, PaymentStatus::Declined);
    assert_eq!(declined.decline_reason.as_deref(), Some("AMOUNT_LIMIT"));
    let (repeat, created) = answers[6].as_ref().expect("a repeat");
    assert!(!created, "charged before: the first payment");
    assert_eq!(repeat.order_id, ids[9]);
    assert!(
        matches!(
            answers[7],
            Err(PaymentError::AmountMismatch {
                existing: 100,
                requested: 999,
                ..
            })
        ),
        "another amount for a charged order"
    );
    let stamps: i64 = sqlx::query_scalar(
        "SELECT COUNT(DISTINCT created_at) FROM payments WHERE order_id = ANY($1)",
    )
    .bind(&ids[1..7])
    .fetch_one(payments.pool())
    .await
    .expect("stamps");
    assert_eq!(stamps, 1, "the six were recorded by one statement");

    // Round 2: an unknown order in the group.
    let unknown = Uuid::new_v4();
    let (first, answers) = behind_a_held_row(
        &db,
        &lock_order(ids[10]),
        charge((ids[10], 100, None)),
        [ids[7], unknown, ids[8]]
            .into_iter()
            .map(|id| charge((id, 100, None)))
            .collect(),
        || charges.waiting(),
    )
    .await;
    assert!(first.expect("the first charge").1);
    assert!(
        answers[0]
            .as_ref()
            .is_ok_and(|(r, c)| *c && r.order_id == ids[7])
    );
    assert!(matches!(answers[1], Err(PaymentError::UnknownOrder(id)) if id == unknown));
    assert!(
        answers[2]
            .as_ref()
            .is_ok_and(|(r, c)| *c && r.order_id == ids[8])
    );
}
