//! What the benchmark measures against: by default its own throwaway
//! PostgreSQL with the three services as processes (as `valerix up` runs
//! them), or a running stack and its database.

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use sqlx::{Connection, PgConnection, PgPool};
use valerix_devdb::{Cluster, Options};
use valerix_stack::across::STOCK_COMMIT_OUTSTANDING_FROM as OUTSTANDING;

use valerix_stack::{Service, StackBuilder};

use super::{Transport, cpu::Roles};

/// Stock of every bench product: more than any run sells.
const STOCK: i32 = 100_000_000;

pub struct Stack {
    cluster: Option<Cluster>,
    pub database_url: String,
    /// The base whose `/orders` takes orders.
    pub target: String,
    /// The API gateway's base for the same (`/api`), when it runs.
    pub gateway: Option<String>,
    with_gateway: bool,
    services: Option<valerix_stack::Stack>,
    log_dir: PathBuf,
    exe: PathBuf,
    env: Vec<(String, String)>,
    transport: Transport,
}

impl Stack {
    /// A throwaway cluster and the services on free ports, each service
    /// process with `env` on top of its defaults; `durable`: the cluster
    /// flushes every commit to disk, as production runs PostgreSQL;
    /// `with_gateway`: the API gateway runs too.
    pub async fn start(
        env: Vec<(String, String)>,
        transport: Transport,
        durable: bool,
        with_gateway: bool,
    ) -> anyhow::Result<Self> {
        let options = Options {
            settings: if durable {
                [
                    ("fsync", "on"),
                    ("synchronous_commit", "on"),
                    ("full_page_writes", "on"),
                ]
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .to_vec()
            } else {
                Vec::new()
            },
        };
        let cluster = tokio::task::spawn_blocking(move || Cluster::start_with(&options)).await??;
        let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
        sqlx::query("CREATE DATABASE valerix_bench")
            .execute(&mut admin)
            .await?;
        let database_url = match transport {
            Transport::Unix => cluster.socket_url("valerix_bench"),
            Transport::Tcp => cluster.url("valerix_bench"),
        };
        valerix_runtime::db::connect_and_migrate(&valerix_runtime::config::DatabaseArgs::from_url(
            &database_url,
        ))
        .await?
        .close()
        .await;
        let log_dir = cluster.dir().join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let mut stack = Self {
            cluster: Some(cluster),
            database_url,
            target: String::new(),
            gateway: None,
            with_gateway,
            services: None,
            log_dir,
            exe: std::env::current_exe().context("locating the valerix binary")?,
            env,
            transport,
        };
        stack.start_services().await?;
        Ok(stack)
    }

    /// A running stack: orders to `target`, the bound on `database_url`.
    pub fn existing(target: String, database_url: String) -> Self {
        Self {
            cluster: None,
            database_url,
            target,
            gateway: None,
            with_gateway: false,
            services: None,
            log_dir: PathBuf::new(),
            exe: PathBuf::new(),
            env: Vec::new(),
            transport: Transport::Tcp,
        }
    }

    /// The processes whose CPU time counts (none for a stack not ours).
    pub fn roles(&self) -> Roles {
        let Some(cluster) = &self.cluster else {
            return Roles::default();
        };
        Roles {
            postmaster_pid_file: Some(cluster.dir().join("data").join("postmaster.pid")),
            services: self
                .services
                .iter()
                .flat_map(|s| s.iter())
                .filter(|p| p.service != Service::Gateway)
                .filter_map(|p| p.pid())
                .collect(),
            gateway: self
                .services
                .iter()
                .flat_map(|s| s.iter())
                .find(|p| p.service == Service::Gateway)
                .and_then(|p| p.pid()),
        }
    }

    /// The service processes it started: name, pid and TCP base URL (none
    /// for a stack not ours).
    pub fn services(&self) -> Vec<(&'static str, u32, String)> {
        self.services
            .iter()
            .flat_map(|s| s.iter())
            .filter_map(|p| Some((p.service.name(), p.pid()?, p.url())))
            .collect()
    }

    /// Where the order service is, as HAProxy names a server: its Unix
    /// socket (`unix@path`) or `host:port`.
    pub fn order_address(&self) -> String {
        match self.transport {
            Transport::Unix => format!(
                "unix@{}",
                self.log_dir
                    .join(format!("{}.sock", Service::Order.name()))
                    .display()
            ),
            Transport::Tcp => self
                .target
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// Where the bench keeps its files (the services' logs and sockets).
    pub fn dir(&self) -> &std::path::Path {
        &self.log_dir
    }

    pub fn is_own(&self) -> bool {
        self.cluster.is_some()
    }

    async fn start_services(&mut self) -> anyhow::Result<()> {
        let mut stack = StackBuilder::new(&self.exe)
            .with(Service::Inventory, 1)
            .with(Service::Payment, 1)
            .with(Service::Order, 1)
            .with(Service::Gateway, usize::from(self.with_gateway))
            .database(&self.database_url)
            .logs(&self.log_dir)
            .env("RUST_LOG", "warn");
        for (k, v) in &self.env {
            stack = stack.env(k, v);
        }
        if self.transport == Transport::Unix {
            stack = stack.unix_sockets(&self.log_dir);
        }
        let stack = stack.start().await?;
        self.target = stack.get(Service::Order).url();
        self.gateway = self
            .with_gateway
            .then(|| format!("{}/api", stack.get(Service::Gateway).url()));
        self.services = Some(stack);
        Ok(())
    }

    /// Stops the services and starts them again with other environment.
    pub async fn restart_services(&mut self, env: Vec<(String, String)>) -> anyhow::Result<()> {
        if let Some(mut services) = self.services.take() {
            services.stop(Duration::from_secs(10)).await;
        }
        self.env = env;
        self.start_services().await
    }

    pub async fn pool(&self) -> anyhow::Result<PgPool> {
        PgPool::connect(&self.database_url)
            .await
            .with_context(|| format!("connecting to {}", self.database_url))
    }

    /// Creates the bench products (or tops up their stock).
    pub async fn seed(&self, products: &[String]) -> anyhow::Result<()> {
        let pool = self.pool().await?;
        for p in products {
            sqlx::query(
                "INSERT INTO inventory (product_id, name, price_cents, stock) VALUES ($1, $1, 1999, $2)
                 ON CONFLICT (product_id) DO UPDATE SET stock = GREATEST(inventory.stock, EXCLUDED.stock)",
            )
            .bind(p)
            .bind(STOCK)
            .execute(&pool)
            .await?;
        }
        pool.close().await;
        Ok(())
    }

    /// Every measurement starts from the same empty tables, so none pays
    /// for the rows of the one before (only on our own database).
    pub async fn reset(&self) -> anyhow::Result<()> {
        if !self.is_own() {
            return Ok(());
        }
        let pool = self.pool().await?;
        sqlx::query("TRUNCATE payments, reservations, idempotency_keys, orders")
            .execute(&pool)
            .await?;
        sqlx::query("UPDATE inventory SET stock = $1, reserved = 0")
            .bind(STOCK)
            .execute(&pool)
            .await?;
        // Only the table that keeps its rows. VACUUM (or ANALYZE) of a
        // just-emptied table records it as empty, the query planner then prefers
        // sequential scans, and prepared statements keep those plans while
        // the table grows: each order then costs more than the one before
        // (that made the first figures both slow and erratic). TRUNCATE
        // leaves the size unknown, and the query planner uses the indexes.
        sqlx::query("VACUUM ANALYZE inventory")
            .execute(&pool)
            .await?;
        // A checkpoint now, not in the middle of a measurement: its writes
        // then fall between runs, and every run starts the same, paying for
        // the first change of each page after it (full-page images in the
        // WAL) from its first order. Left to its timer, one run in a few
        // had a checkpoint and another did not.
        sqlx::query("CHECKPOINT").execute(&pool).await?;
        pool.close().await;
        Ok(())
    }

    /// After a measurement (our own database only): waits until every order
    /// is settled, then checks that nothing is left reserved and that each
    /// product's stock moved by exactly the quantities of its confirmed
    /// orders. Fails when it did not.
    pub async fn check_settled(&self) -> anyhow::Result<()> {
        if !self.is_own() {
            return Ok(());
        }
        let pool = self.pool().await?;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            // Settled, and (committed after the answers) their stock too.
            let (unsettled, uncommitted): (i64, i64) = sqlx::query_as(&format!(
                "SELECT (SELECT COUNT(*) FROM orders WHERE status NOT IN ('CONFIRMED', 'FAILED')),
                        (SELECT COUNT(*) {OUTSTANDING})"
            ))
            .fetch_one(&pool)
            .await?;
            if unsettled == 0 && uncommitted == 0 {
                break;
            }
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "60 s after the measurement {unsettled} orders still unsettled, \
                 {uncommitted} confirmed orders' stock not committed"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let (reserved, moved_wrong): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE(SUM(i.reserved), 0)::int8,
                    COUNT(*) FILTER (WHERE i.stock <> $1 - COALESCE(o.sold, 0))
             FROM inventory i
             LEFT JOIN (SELECT product_id, SUM(quantity) AS sold FROM orders
                        WHERE status = 'CONFIRMED' GROUP BY product_id) o
                    ON o.product_id = i.product_id",
        )
        .bind(STOCK)
        .fetch_one(&pool)
        .await?;
        pool.close().await;
        anyhow::ensure!(reserved == 0, "{reserved} units left reserved");
        anyhow::ensure!(
            moved_wrong == 0,
            "{moved_wrong} products' stock did not move by their confirmed quantities"
        );
        Ok(())
    }

    pub async fn postgres_version(&self) -> String {
        let Ok(pool) = self.pool().await else {
            return "unknown".into();
        };
        let v: Result<String, _> = sqlx::query_scalar("SHOW server_version")
            .fetch_one(&pool)
            .await;
        pool.close().await;
        v.unwrap_or_else(|_| "unknown".into())
    }

    pub async fn stop(mut self) {
        if let Some(mut services) = self.services.take() {
            services.stop(Duration::from_secs(10)).await;
        }
        if let Some(mut c) = self.cluster.take() {
            let _ = tokio::task::spawn_blocking(move || c.stop()).await;
        }
    }
}
