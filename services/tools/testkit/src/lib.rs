//! The test harness: one throwaway PostgreSQL per test run, a fresh database
//! per test (cloned from a migrated template, so each costs milliseconds),
//! and the real services on port 0, over real HTTP.
//!
//! - the crate root: [`TestDb`], the services in-process ([`Stack`]; one by one:
//!   `services`, re-exported), waiting helpers (`wait`, re-exported)
//! - [`process`]: the services as real processes; [`metrics`]: reading `/metrics`

use std::{collections::BTreeMap, path::PathBuf, sync::OnceLock, time::Duration};

use sqlx::{Connection, PgConnection, PgPool};
use valerix_devdb::Cluster;
use valerix_runtime::topology::Service;

pub use valerix_devdb as devdb;

pub mod metrics;
pub mod process;
mod services;
mod wait;

pub use services::*;
pub use wait::*;

const TEMPLATE: &str = "valerix_template";

fn cluster() -> &'static Cluster {
    static CLUSTER: OnceLock<Cluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        // A thread of its own: this may be called from inside a test's
        // runtime, where blocking on another runtime is not allowed.
        std::thread::spawn(|| {
            let cluster =
                Cluster::start().unwrap_or_else(|e| panic!("cannot start PostgreSQL: {e}"));
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("runtime: {e}"));
            rt.block_on(async {
                let mut admin = PgConnection::connect(&cluster.url("postgres"))
                    .await
                    .unwrap_or_else(|e| panic!("connect: {e}"));
                sqlx::query(&format!("CREATE DATABASE {TEMPLATE}"))
                    .execute(&mut admin)
                    .await
                    .unwrap_or_else(|e| panic!("create template: {e}"));
                let mut conn = PgConnection::connect(&cluster.url(TEMPLATE))
                    .await
                    .unwrap_or_else(|e| panic!("connect template: {e}"));
                valerix_runtime::db::MIGRATOR
                    .run(&mut conn)
                    .await
                    .unwrap_or_else(|e| panic!("migrate template: {e}"));
                let _ = conn.close().await;
            });
            cluster
        })
        .join()
        .unwrap_or_else(|_| panic!("starting PostgreSQL panicked"))
    })
}

/// A service's configuration from flags and its defaults.
fn parse<C: clap::Parser>(args: &[String]) -> C {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    valerix_runtime::config::from_args(&args).unwrap_or_else(|e| panic!("{args:?}: {e}"))
}

/// A database of its own for one test, already migrated.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let cluster = cluster();
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = PgConnection::connect(&cluster.url("postgres"))
            .await
            .unwrap_or_else(|e| panic!("connect: {e}"));
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("create database: {e}"));
        let url = cluster.url(&name);
        Self { name, url }
    }

    pub async fn pool(&self) -> PgPool {
        PgPool::connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.url))
    }
}

/// A random bearer token in a file of its own (mode 0600), as systemd's
/// `LoadCredential` or `valerix up` hands one over. Removed on drop.
pub struct TokenFile {
    pub path: PathBuf,
    pub token: String,
}

impl TokenFile {
    pub fn new(what: &str) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let path = std::env::temp_dir().join(format!("valerix-{what}-{}", uuid::Uuid::new_v4()));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        std::io::Write::write_all(&mut file, format!("{token}\n").as_bytes())
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        Self { path, token }
    }

    /// The `Authorization` header value.
    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.token)
    }
}

impl Drop for TokenFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The three services on one fresh database.
pub struct Stack {
    pub db: TestDb,
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub inventory: Running,
    pub payment: Running,
    pub order: Running,
    /// The token the gateways of this stack take from the operator.
    pub operator: TokenFile,
    /// The token the services require of each other, when the stack was
    /// started with `StackOptions::service_token`.
    pub service: Option<TokenFile>,
}

/// Knobs a test may turn before the stack starts.
pub struct StackOptions {
    pub order: Box<dyn FnOnce(&mut order_service::Config) + Send>,
    /// Start every service with the /gremlin endpoints enabled.
    pub gremlins: bool,
    /// Each service also serves on `<dir>/<service>.sock`, and the order
    /// service calls inventory and payment through their sockets.
    pub unix_sockets: Option<PathBuf>,
    /// Every service started with `--service-token-file`.
    pub service_token: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            order: Box::new(|_| {}),
            gremlins: false,
            unix_sockets: None,
            service_token: false,
        }
    }
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with(StackOptions::default()).await
    }

    pub async fn start_with(opts: StackOptions) -> Self {
        let db = TestDb::new().await;
        let pool = db.pool().await;
        let socket = |service: Service| {
            opts.unix_sockets
                .as_ref()
                .map(|d| d.join(format!("{}.sock", service.command())))
        };
        let service = opts.service_token.then(|| TokenFile::new("service-token"));
        let mut running: BTreeMap<Service, String> = BTreeMap::new();
        // The flags the process launcher would give the service.
        let args = |service_: Service, running: &BTreeMap<Service, String>| {
            let mut args =
                valerix_stack::wiring(service_, Some(&db.url), opts.gremlins, |callee| {
                    running.get(&callee).cloned()
                });
            if let Some(path) = socket(service_) {
                args.extend(["--unix-socket".to_owned(), path.display().to_string()]);
            }
            if let Some(token) = &service {
                args.extend([
                    "--service-token-file".to_owned(),
                    token.path.display().to_string(),
                ]);
            }
            args
        };
        let address = |service: Service, svc: &Running| {
            socket(service).map_or_else(|| svc.url.clone(), |p| format!("unix:{}", p.display()))
        };
        let inventory = start_inventory_with(parse(&args(Service::Inventory, &running))).await;
        running.insert(Service::Inventory, address(Service::Inventory, &inventory));
        let payment = start_payment_with(parse(&args(Service::Payment, &running))).await;
        running.insert(Service::Payment, address(Service::Payment, &payment));
        let mut config: order_service::Config = parse(&args(Service::Order, &running));
        config.reconcile_interval_ms = 100;
        (opts.order)(&mut config);
        let order = start_order(config).await;
        let http = reqwest::Client::new();
        for svc in [&inventory, &payment] {
            wait_healthy(&http, &svc.url, Duration::from_secs(30)).await;
        }
        // The order service may be unhealthy on purpose (a test's dead
        // downstream): wait only until it answers.
        wait_answering(&http, &order.url, Duration::from_secs(30)).await;
        Self {
            db,
            pool,
            http,
            inventory,
            payment,
            order,
            operator: TokenFile::new("operator-token"),
            service,
        }
    }

    /// The gateway's settings for this stack's services, with its tokens.
    pub fn gateway_config(&self) -> api_gateway::Config {
        let mut config = api_gateway::Config::with_upstreams(
            self.order.upstream(),
            self.inventory.upstream(),
            self.payment.upstream(),
        );
        config.operator_token_file = Some(self.operator.path.clone());
        config.http.service_token_file = self.service.as_ref().map(|t| t.path.clone());
        config
    }

    /// An API gateway in front of this stack, answering once it is up.
    pub async fn gateway(&self) -> Running {
        self.gateway_with(self.gateway_config()).await
    }

    pub async fn gateway_with(&self, config: api_gateway::Config) -> Running {
        let gateway = start_gateway(config).await;
        wait_answering(&self.http, &gateway.url, Duration::from_secs(30)).await;
        gateway
    }

    /// Creates (or restocks) a product through the inventory API.
    pub async fn product(&self, id: &str, price_cents: i64, stock: i32) {
        let mut put = self
            .http
            .put(format!("{}/inventory/{id}", self.inventory.url))
            .json(&serde_json::json!({ "name": id, "price_cents": price_cents, "stock": stock }));
        if let Some(service) = &self.service {
            put = put.header("authorization", service.bearer());
        }
        let resp = put
            .send()
            .await
            .unwrap_or_else(|e| panic!("seed {id}: {e}"));
        assert!(resp.status().is_success(), "seed {id}: {}", resp.status());
    }
}
