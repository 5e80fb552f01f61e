//! The payment store against a real PostgreSQL (a fresh database per test):
//! what a charge records, how repeats, voids and refunds answer, and what a
//! group of charges stores. The orders charged are placed through the
//! inventory's and the order service's own stores, as the saga would have.

use payment_service::{
    domain::PaymentStatus,
    store::{Store, StoreError},
};
use uuid::Uuid;
use valerix_runtime::contract::domain::{Cents, ProductId, Quantity};
use valerix_testkit::TestDb;

/// A payment store on a fresh database, and a way to place orders in it.
struct Fixture {
    payments: Store,
    orders: order_service::store::Store,
    product: ProductId,
}

impl Fixture {
    async fn new() -> Self {
        let pool = TestDb::new().await.pool().await;
        let product = ProductId::parse("PROD-PAY").expect("a product id");
        let price = Cents::new(500).expect("a price");
        inventory_service::store::Store::new(pool.clone())
            .upsert_product(&product, "Widget", price, 100)
            .await
            .expect("a product");
        Self {
            payments: Store::new(pool.clone()),
            orders: order_service::store::Store::new(pool),
            product,
        }
    }

    async fn order(&self) -> Uuid {
        let new = order_service::store::NewOrder {
            user_id: None,
            product_id: self.product.clone(),
            quantity: Quantity::new(1).expect("a quantity"),
        };
        let created = self
            .orders
            .create(&new, &order_service::store::Idempotency::None)
            .await
            .expect("an order");
        created.order.id
    }
}

#[tokio::test]
async fn a_charge_is_recorded_once_and_a_repeat_answers_the_first_payment() {
    let f = Fixture::new().await;
    let order = f.order().await;
    let (first, created) = f.payments.charge(order, 500, None).await.expect("charge");
    assert!(created);
    assert_eq!(
        (first.status, first.amount_cents),
        (PaymentStatus::Completed, 500)
    );

    let (again, created) = f.payments.charge(order, 500, None).await.expect("repeat");
    assert!(!created, "a repeat is not a second charge");
    assert_eq!(again.id, first.id);

    match f.payments.charge(order, 501, None).await {
        Err(StoreError::AmountMismatch {
            existing: 500,
            requested: 501,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_declined_charge_is_recorded_with_its_reason_and_repeats_as_declined() {
    let f = Fixture::new().await;
    let order = f.order().await;
    let (declined, _) = f
        .payments
        .charge(order, 500, Some("AMOUNT_LIMIT"))
        .await
        .expect("charge");
    assert_eq!(declined.status, PaymentStatus::Declined);
    assert_eq!(declined.decline_reason.as_deref(), Some("AMOUNT_LIMIT"));
    // The rule may say otherwise now: the first outcome stands.
    let (again, created) = f.payments.charge(order, 500, None).await.expect("repeat");
    assert!(!created);
    assert_eq!(
        (again.id, again.status),
        (declined.id, PaymentStatus::Declined)
    );
}

#[tokio::test]
async fn a_void_before_the_charge_fences_it_off_and_after_it_changes_nothing() {
    let f = Fixture::new().await;
    let fenced = f.order().await;
    let fence = f.payments.void(fenced).await.expect("void");
    assert_eq!(
        (fence.status, fence.amount_cents),
        (PaymentStatus::Voided, 0)
    );
    let (late, created) = f.payments.charge(fenced, 500, None).await.expect("charge");
    assert!(!created, "a charge after the fence is not made");
    assert_eq!((late.id, late.status), (fence.id, PaymentStatus::Voided));

    let paid = f.order().await;
    let (payment, _) = f.payments.charge(paid, 500, None).await.expect("charge");
    let voided = f.payments.void(paid).await.expect("void");
    assert_eq!(
        (voided.id, voided.status),
        (payment.id, PaymentStatus::Completed)
    );
}

#[tokio::test]
async fn only_a_completed_payment_is_refunded() {
    let f = Fixture::new().await;
    let paid = f.order().await;
    f.payments.charge(paid, 500, None).await.expect("charge");
    let refunded = f.payments.refund(paid).await.expect("refund");
    assert_eq!(refunded.status, PaymentStatus::Refunded);

    let declined = f.order().await;
    f.payments
        .charge(declined, 500, Some("TEST_USER_DECLINED"))
        .await
        .expect("charge");
    let unchanged = f.payments.refund(declined).await.expect("refund");
    assert_eq!(unchanged.status, PaymentStatus::Declined);

    let unpaid = f.order().await;
    assert!(matches!(
        f.payments.refund(unpaid).await,
        Err(StoreError::NoPaymentForOrder(id)) if id == unpaid
    ));
}

#[tokio::test]
async fn a_group_stores_the_first_charges_and_leaves_out_orders_already_charged() {
    let f = Fixture::new().await;
    let (charged, fresh, declined) = (f.order().await, f.order().await, f.order().await);
    f.payments.charge(charged, 500, None).await.expect("charge");
    let stored = f
        .payments
        .charge_many(&[
            (charged, 500, None),
            (fresh, 500, None),
            (declined, 500, Some("AMOUNT_LIMIT")),
        ])
        .await
        .expect("group");
    assert!(!stored.contains_key(&charged), "charged before");
    assert_eq!(stored[&fresh].status, PaymentStatus::Completed);
    assert_eq!(stored[&declined].status, PaymentStatus::Declined);
}

#[tokio::test]
async fn a_charge_for_an_unknown_order_is_refused_alone_and_in_a_group() {
    let f = Fixture::new().await;
    let unknown = Uuid::new_v4();
    assert!(matches!(
        f.payments.charge(unknown, 500, None).await,
        Err(StoreError::UnknownOrder(id)) if id == unknown
    ));
    let known = f.order().await;
    assert!(
        f.payments
            .charge_many(&[(known, 500, None), (unknown, 500, None)])
            .await
            .is_err(),
        "the database refuses the group as a whole"
    );
    assert!(
        f.payments
            .find_by_order(known)
            .await
            .expect("read")
            .is_none(),
        "and stores none of it"
    );
}
