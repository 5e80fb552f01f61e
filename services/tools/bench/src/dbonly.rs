//! The database-only bound: the SQL one confirmed order costs, issued
//! directly, with no HTTP in between. It runs the services' own store code
//! (not a copy of their SQL), in the order the saga runs it:
//!
//! 1. order service: insert the order (create)
//! 2. inventory: the reserve transaction (take stock, record the
//!    reservation at the product's price)
//! 3. payment: the charge insert
//! 4. inventory: the commit transaction (stock leaves, mark COMMITTED)
//! 5. order service: settle the order CONFIRMED
//!
//! N tasks do this back to back on a pool of N connections, as N clients
//! would through the services.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, ensure};
use hdrhistogram::Histogram;
use order_service::{
    domain::OrderStatus,
    store::{Idempotency, NewOrder, Settlement, Store as Orders},
};
use sqlx::PgPool;
use valerix_runtime::contract::domain::{ProductId, Quantity};

use super::{BenchArgs, Measured, cpu::Roles};

struct Stores {
    orders: Orders,
    inventory: inventory_service::store::Store,
    payments: payment_service::store::Store,
}

impl Stores {
    async fn one_order(&self, product: &ProductId) -> anyhow::Result<()> {
        let quantity = Quantity::new(1).map_err(anyhow::Error::msg)?;
        let new = NewOrder {
            user_id: None,
            product_id: product.clone(),
            quantity,
        };
        let order = self.orders.create(&new, &Idempotency::None).await?.order;
        let held = self.inventory.reserve(order.id, product, quantity).await?;
        ensure!(
            held.row.status == inventory_service::domain::ReservationStatus::Reserved,
            "reserve for {} answered {} (is the stock too low?)",
            order.id,
            held.row.status
        );
        let unit_price = held
            .row
            .unit_price_cents
            .context("a reservation without its price")?;
        let amount_cents = unit_price * i64::from(quantity.get());
        let (paid, _) = self.payments.charge(order.id, amount_cents, None).await?;
        ensure!(
            paid.status == payment_service::domain::PaymentStatus::Completed,
            "charge answered {:?}",
            paid.status
        );
        self.inventory.commit(order.id).await?;
        self.orders
            .settle(&Settlement {
                id: order.id,
                status: OrderStatus::Confirmed,
                reason: None,
                amount_cents: Some(amount_cents),
            })
            .await?;
        Ok(())
    }
}

/// Orders through the stores from `concurrency` tasks for `duration`.
pub async fn measure(
    database_url: &str,
    products: &[String],
    concurrency: usize,
    args: &BenchArgs,
    roles: &Roles,
) -> anyhow::Result<Measured> {
    // The services' pool settings, one connection per task.
    let pool: PgPool = valerix_runtime::db::pool_options(concurrency as u32)
        .min_connections(concurrency as u32)
        .connect(database_url)
        .await
        .context("connecting for the database-only bound")?;
    let stores = Arc::new(Stores {
        orders: Orders::new(pool.clone()),
        inventory: inventory_service::store::Store::new(pool.clone()),
        payments: payment_service::store::Store::new(pool.clone()),
    });
    let products: Arc<Vec<ProductId>> = Arc::new(
        products
            .iter()
            .map(|p| ProductId::parse(p).map_err(anyhow::Error::msg))
            .collect::<Result<_, _>>()?,
    );
    // The warm-up fills each connection's statement cache, as a running
    // service's would be.
    run(&stores, &products, concurrency, args.warmup).await?;
    let before = roles.sample();
    let measured = run(&stores, &products, concurrency, args.duration).await;
    // Before the pool closes: its backends' time goes with them.
    let after = roles.sample();
    pool.close().await;
    let mut measured = measured?;
    measured.cpu = after.zip(before).map(|(a, b)| a - b);
    Ok(measured)
}

async fn run(
    stores: &Arc<Stores>,
    products: &Arc<Vec<ProductId>>,
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Measured> {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + duration;
    let workers: Vec<_> = (0..concurrency.max(1))
        .map(|_| {
            let (stores, products, next) = (stores.clone(), products.clone(), next.clone());
            tokio::spawn(async move {
                let mut latency = super::histogram();
                while Instant::now() < deadline {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let product = &products[(n % products.len() as u64) as usize];
                    let t0 = Instant::now();
                    stores.one_order(product).await?;
                    let _ = latency.record(t0.elapsed().as_micros() as u64);
                }
                anyhow::Ok(latency)
            })
        })
        .collect();
    let mut latency: Histogram<u64> = super::histogram();
    for w in workers {
        let h = w.await.context("a database-only worker panicked")??;
        latency.add(&h).context("merging histograms")?;
    }
    Ok(Measured::new(latency, start.elapsed(), 0))
}
