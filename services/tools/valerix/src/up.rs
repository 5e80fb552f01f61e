//! `valerix up`: the whole stack on localhost. A throwaway PostgreSQL (or the
//! one given), migrations, Prometheus/Grafana/Jaeger when installed, the
//! services as child processes on the plan's ports, demo products; Ctrl-C
//! stops everything and removes what it created.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, bail};
use clap::Args;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use sqlx::{Connection, PgConnection};
use valerix_devdb::Cluster;
use valerix_runtime::{config::DatabaseArgs, db};

use valerix_stack::process::ServiceProcess;

use crate::observe::{self, Target};

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Use this PostgreSQL instead of starting a throwaway cluster
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Interface the services listen on
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port of the order service; inventory and payment use the next two,
    /// the API gateway the one before
    #[arg(long, default_value_t = 5001)]
    pub base_port: u16,

    /// Do not create the demo products
    #[arg(long)]
    pub no_seed: bool,

    /// Start the services without the /gremlin fault-injection endpoints
    #[arg(long)]
    pub no_gremlins: bool,

    /// Do not start Prometheus, Grafana or Jaeger even when installed
    #[arg(long)]
    pub no_observability: bool,

    /// Port of Prometheus (Grafana's datasource expects the default)
    #[arg(long, default_value_t = observe::PROMETHEUS_PORT)]
    pub prometheus_port: u16,

    /// The dashboard's files [default: ./ui, else share/valerix/ui beside
    /// the binary as installed, else the source tree's ui/]
    #[arg(long, env = "VALERIX_UI_DIR")]
    pub ui_dir: Option<PathBuf>,
}

/// Where the dashboard is, for a person who runs `valerix up` from a
/// checkout, from an installed package, or from `cargo test` (whose working
/// directory is the crate's).
fn find_ui_dir(exe: &Path) -> Option<PathBuf> {
    let installed = std::fs::canonicalize(exe)
        .ok()
        .and_then(|real| Some(real.parent()?.parent()?.join("share/valerix/ui")));
    [
        Some(PathBuf::from("ui")),
        installed,
        Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../ui")),
    ]
    .into_iter()
    .flatten()
    .find(|dir| dir.join("index.html").is_file())
}

async fn create_database(cluster: &Cluster) -> anyhow::Result<String> {
    let mut admin = PgConnection::connect(&cluster.url("postgres")).await?;
    sqlx::query("CREATE DATABASE valerix")
        .execute(&mut admin)
        .await?;
    Ok(cluster.url("valerix"))
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let mut cluster = None;
    let db_url = match &args.database_url {
        Some(url) => url.clone(),
        None => {
            let c = tokio::task::spawn_blocking(Cluster::start).await??;
            println!(
                "PostgreSQL: throwaway cluster in {} on port {}",
                c.dir().display(),
                c.port()
            );
            let url = create_database(&c).await?;
            cluster = Some(c);
            url
        }
    };
    // Once here, so the services do not all race to migrate a new database.
    db::connect_and_migrate(&DatabaseArgs::from_url(&db_url))
        .await?
        .close()
        .await;

    let host = &args.host;
    if args.base_port < 2 || args.base_port > u16::MAX - 2 {
        bail!("--base-port must leave room for the gateway before it and two services after it");
    }
    let listen = |port: u16| format!("{host}:{port}");
    let (gw_listen, order_listen, inv_listen, pay_listen) = (
        listen(args.base_port - 1),
        listen(args.base_port),
        listen(args.base_port + 1),
        listen(args.base_port + 2),
    );
    let state_dir = std::env::temp_dir().join(format!("valerix-up-{}", std::process::id()));
    let obs = if args.no_observability {
        observe::Observability::default()
    } else {
        let targets = [
            ("api-gateway", &gw_listen),
            ("order-service", &order_listen),
            ("inventory-service", &inv_listen),
            ("payment-service", &pay_listen),
        ]
        .map(|(job, address)| Target {
            job,
            address: address.clone(),
        });
        observe::start(&state_dir, &targets, args.prometheus_port).await
    };

    let exe = std::env::current_exe().context("locating the valerix binary")?;
    // Our own cluster is on this host: the services reach it through its
    // Unix socket (people get the TCP URL printed below).
    let services_db_url = cluster
        .as_ref()
        .map_or_else(|| db_url.clone(), |c| c.socket_url("valerix"));
    let database = vec!["--database-url".to_owned(), services_db_url];
    let with_gremlins = !args.no_gremlins;
    // The services call each other over Unix sockets beside the state
    // files; their TCP ports stay for people, Prometheus and the tests.
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    // The operator's credential for this run (token.rs).
    let operator = crate::token::OperatorToken::create(&state_dir)?;
    let service = |name, sub, listen: &String, extra: &[String]| {
        let mut args = extra.to_vec();
        if with_gremlins {
            args.push("--gremlins".to_owned());
        }
        let mut p = ServiceProcess::new(&exe, name, sub, listen.clone(), args)
            .unix_socket(state_dir.join(format!("{name}.sock")));
        if obs.jaeger_running() {
            p = p
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", observe::JAEGER_OTLP)
                .env("OTEL_SERVICE_NAME", name);
        }
        p
    };
    let inventory = service("inventory-service", "inventory", &inv_listen, &database);
    let payment = service("payment-service", "payment", &pay_listen, &database);
    let downstreams = [
        "--inventory-url".to_owned(),
        inventory.local_address(),
        "--payment-url".to_owned(),
        payment.local_address(),
    ];
    let order = service(
        "order-service",
        "order",
        &order_listen,
        &[database.clone(), downstreams.to_vec()].concat(),
    );
    let ui_dir = args.ui_dir.clone().or_else(|| find_ui_dir(&exe));
    let ui = match &ui_dir {
        Some(dir) => vec!["--ui-dir".to_owned(), dir.display().to_string()],
        None => {
            println!(
                "Dashboard: no ui/ directory found (give --ui-dir); the gateway serves the APIs only"
            );
            Vec::new()
        }
    };
    let upstreams = [
        "--order-url".to_owned(),
        order.local_address(),
        "--inventory-url".to_owned(),
        inventory.local_address(),
        "--payment-url".to_owned(),
        payment.local_address(),
    ];
    let gateway = service(
        "api-gateway",
        "gateway",
        &gw_listen,
        &[upstreams.to_vec(), ui, operator.gateway_args().to_vec()].concat(),
    );
    // Started in dependency order, then listed with the gateway first: it
    // is where a person starts.
    let mut procs = vec![inventory, payment, order, gateway];
    let http = reqwest::Client::new();
    for p in &mut procs {
        p.start()?;
        p.wait_healthy(&http, Duration::from_secs(30)).await?;
    }
    procs.rotate_right(1);
    if !args.no_seed {
        let created = crate::seed::seed(&format!("http://{inv_listen}")).await?;
        if !created.is_empty() {
            println!("Seeded demo products: {}", created.join(", "));
        }
    }
    for tool in &obs.running {
        observe::wait_answering(&tool.url, Duration::from_secs(20)).await;
    }

    println!();
    println!("Valerix is up.");
    for p in &procs {
        let url = p.url();
        if p.name == "api-gateway" {
            println!(
                "  {:<18} {url}   (dashboard; APIs under {url}/api/...; Swagger UI: {url}/docs)",
                p.name
            );
        } else {
            println!(
                "  {:<18} {url}   (Swagger UI: {url}/docs, metrics: {url}/metrics)",
                p.name
            );
        }
    }
    println!("  {:<18} {db_url}", "database");
    println!(
        "  {:<18} {}   (the operator's dashboard; token in {})",
        "operator link",
        operator.dashboard_link(&procs[0].url()),
        operator.path().display()
    );
    for tool in &obs.running {
        println!("  {:<18} {}", tool.name, tool.url);
    }
    for skipped in &obs.skipped {
        println!("  skipped            {skipped}");
    }
    println!();
    println!(
        "Try:  curl -s -X POST {}/api/orders -H 'content-type: application/json' \\",
        procs[0].url()
    );
    println!("        -d '{{\"product_id\":\"PROD-1\",\"quantity\":1}}'");
    println!(
        "      curl -s {}/api/orders -H \"Authorization: Bearer $(cat {})\"",
        procs[0].url(),
        operator.path().display()
    );
    if !args.no_gremlins {
        println!(
            "      curl -s -X POST http://{inv_listen}/gremlin/latency -H 'content-type: application/json' -d '{{\"delay_ms\":3000,\"enabled\":true}}'"
        );
    }
    println!(
        "Ctrl-C stops everything{}.",
        if cluster.is_some() {
            " and removes the cluster"
        } else {
            ""
        }
    );

    let exited = wait_for_stop(&mut procs).await;
    if let Some(name) = &exited {
        eprintln!("{name} exited; stopping the stack");
    }
    for p in &procs {
        p.sigterm();
    }
    for p in &mut procs {
        p.stop(Duration::from_secs(15)).await;
    }
    for mut tool in obs.running {
        if let Some(pid) = tool.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), tool.child.wait()).await;
    }
    let _ = std::fs::remove_dir_all(&state_dir);
    if let Some(mut c) = cluster {
        tokio::task::spawn_blocking(move || c.stop()).await?;
        println!("Stopped; the throwaway cluster is removed.");
    }
    match exited {
        Some(name) => bail!("{name} stopped unexpectedly"),
        None => Ok(()),
    }
}

/// Until Ctrl-C/SIGTERM (None) or a service exits on its own (its name).
async fn wait_for_stop(procs: &mut [ServiceProcess]) -> Option<&'static str> {
    let any_exit = async {
        loop {
            for p in procs.iter_mut() {
                if p.is_dead() {
                    return p.name;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        _ = valerix_runtime::shutdown::signal() => None,
        name = any_exit => Some(name),
    }
}
