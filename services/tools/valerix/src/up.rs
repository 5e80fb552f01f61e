//! `valerix up`: the whole stack on localhost. A throwaway PostgreSQL (or the
//! one given, or with `--ha` a highly available one: Patroni, etcd, HAProxy),
//! migrations, Prometheus/Grafana/Jaeger when installed, the
//! services as child processes on the contract's ports, demo products; Ctrl-C
//! stops everything and removes what it created.

use std::{
    net::IpAddr,
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

use valerix_stack::{Ports, RestartPolicy, Service, StackBuilder, Supervisor};

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
    #[arg(long, default_value_t = Service::Order.default_port())]
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

    #[command(flatten)]
    pub backup: crate::backup::dev::UpBackupArgs,

    #[command(flatten)]
    pub ha: crate::ha::HaArgs,
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
    let mut ha_cluster = None;
    let mut backups = None;
    let db_url = match &args.database_url {
        Some(_) if args.backup.backup_dir.is_some() => {
            bail!("--backup-dir archives the throwaway cluster; give it without --database-url")
        }
        Some(_) if args.ha.ha => {
            bail!("--ha starts its own PostgreSQL nodes; give it without --database-url")
        }
        None if args.ha.ha && args.backup.backup_dir.is_some() => {
            bail!("--backup-dir archives the single throwaway cluster; it does not go with --ha")
        }
        Some(url) => url.clone(),
        None if args.ha.ha => {
            let c = crate::ha::start(&args.ha.options()).await?;
            println!(
                "PostgreSQL: {} nodes under Patroni in {}, HAProxy on port {} ({})",
                args.ha.ha_nodes,
                c.dir().display(),
                c.port(),
                crate::ha::describe(&c).await
            );
            let url = c.url("valerix");
            ha_cluster = Some(c);
            url
        }
        None => {
            let (c, b) = crate::backup::dev::start_dev_cluster(&args.backup).await?;
            println!(
                "PostgreSQL: throwaway cluster in {} on port {}",
                c.dir().display(),
                c.port()
            );
            let url = match b.as_ref().and_then(|b| b.restored) {
                Some(_) => c.url("valerix"),
                None => create_database(&c).await?,
            };
            cluster = Some(c);
            backups = b;
            url
        }
    };
    // Once here, so the services do not all race to migrate a new database.
    if ha_cluster.is_none() {
        db::connect_and_migrate(&DatabaseArgs::from_url(&db_url))
            .await?
            .close()
            .await;
    }
    if let Some(b) = &backups {
        b.first_backup().await?;
    }

    let address = |service: Service| {
        service
            .port_from_base(args.base_port)
            .map(|port| format!("{}:{port}", args.host))
            .with_context(|| {
                format!(
                    "--base-port {} leaves no port for {service}",
                    args.base_port
                )
            })
    };
    sweep_stale_state_dirs();
    let state_dir = std::env::temp_dir().join(format!("{STATE_DIR_PREFIX}{}", std::process::id()));
    let obs = if args.no_observability {
        observe::Observability::default()
    } else {
        let targets = Service::ALL
            .into_iter()
            .map(|service| {
                Ok(Target {
                    job: service.name(),
                    address: address(service)?,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        observe::start(&state_dir, &targets, args.prometheus_port).await
    };

    let exe = std::env::current_exe().context("locating the valerix binary")?;
    // Our own cluster is on this host: the services reach it through its
    // Unix socket (people get the TCP URL printed below).
    let services_db_url = cluster
        .as_ref()
        .map_or_else(|| db_url.clone(), |c| c.socket_url("valerix"));
    let ui_dir = args.ui_dir.clone().or_else(|| find_ui_dir(&exe));
    let host: IpAddr = args
        .host
        .parse()
        .with_context(|| format!("--host {:?} is not an IP address", args.host))?;
    // The services call each other over Unix sockets beside the state
    // files; their TCP ports stay for people, Prometheus and the tests.
    std::fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating {}", state_dir.display()))?;
    // The operator's credential for this run (token.rs).
    let operator = crate::token::OperatorToken::create(&state_dir)?;
    let mut stack = StackBuilder::new(&exe)
        .all()
        .host(host)
        .ports(Ports::Base(args.base_port))
        .database(&services_db_url)
        .gremlins(!args.no_gremlins)
        .unix_sockets(&state_dir)
        // As systemd's socket units do: a service's sockets outlive its
        // process, so a restart refuses no connection.
        .hold_sockets(true);
    if obs.jaeger_running() {
        stack = stack.otlp(observe::JAEGER_OTLP);
    }
    stack = stack.args(Service::Gateway, operator.gateway_args());
    match &ui_dir {
        Some(dir) => {
            stack = stack.args(
                Service::Gateway,
                ["--ui-dir".to_owned(), dir.display().to_string()],
            )
        }
        None => println!(
            "Dashboard: no ui/ directory found (give --ui-dir); the gateway serves the APIs only"
        ),
    }
    let mut stack = stack.start().await?;
    if !args.no_seed {
        let created = crate::seed::seed(&stack.get(Service::Inventory).url()).await?;
        if !created.is_empty() {
            println!("Seeded demo products: {}", created.join(", "));
        }
    }
    for tool in &obs.running {
        observe::wait_answering(&tool.url, Duration::from_secs(20)).await;
    }

    println!();
    println!("Valerix is up.");
    for service in Service::ALL {
        let url = stack.get(service).url();
        if service == Service::Gateway {
            println!(
                "  {:<18} {url}   (dashboard; APIs under {url}/api/...; Swagger UI: {url}/docs)",
                service.name()
            );
        } else {
            println!(
                "  {:<18} {url}   (Swagger UI: {url}/docs, metrics: {url}/metrics)",
                service.name()
            );
        }
    }
    println!("  {:<18} {db_url}", "database");
    if let Some(b) = &backups {
        println!("  {:<18} {}", "backups", b.describe());
    }
    println!(
        "  {:<18} {}   (the operator's dashboard; token in {})",
        "operator link",
        operator.dashboard_link(&stack.get(Service::Gateway).url()),
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
        stack.get(Service::Gateway).url()
    );
    println!("        -d '{{\"product_id\":\"PROD-1\",\"quantity\":1}}'");
    println!(
        "      curl -s {}/api/orders -H \"Authorization: Bearer $(cat {})\"",
        stack.get(Service::Gateway).url(),
        operator.path().display()
    );
    if !args.no_gremlins {
        println!(
            "      curl -s -X POST {}/gremlin/latency -H 'content-type: application/json' -d '{{\"delay_ms\":3000,\"enabled\":true}}'",
            stack.get(Service::Inventory).url()
        );
    }
    println!(
        "Ctrl-C stops everything{}.",
        match (&cluster, &backups) {
            (Some(_), Some(b)) => format!(
                " and removes the cluster; its backups stay in {} (`valerix up --backup-dir {0} --restore latest` brings it back)",
                b.dir.root().display()
            ),
            (Some(_), None) => " and removes the cluster".to_owned(),
            (None, _) if ha_cluster.is_some() => " and removes the PostgreSQL nodes".to_owned(),
            (None, _) => String::new(),
        }
    );

    // Kept alive as systemd keeps the NixOS module's units: a service that
    // exits is restarted; Ctrl-C or SIGTERM stops everything.
    let mut supervisor = Supervisor::new(&stack, RestartPolicy::default());
    supervisor
        .run(
            &mut stack,
            valerix_runtime::server::shutdown::signal(),
            |event| {
                println!("valerix: {event}");
            },
        )
        .await;
    println!("Stopping...");
    stack.stop(Duration::from_secs(15)).await;
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
    if let Some(mut c) = ha_cluster {
        tokio::task::spawn_blocking(move || c.stop()).await?;
        println!("Stopped; the PostgreSQL nodes are removed.");
    }
    Ok(())
}

const STATE_DIR_PREFIX: &str = "valerix-up-";

/// Removes the state directories (Unix sockets, Prometheus' files) of
/// `valerix up` runs that were killed before they could clean up: their
/// process is gone, and their services died with them.
fn sweep_stale_state_dirs() {
    valerix_stack::notify::sweep_orphans(STATE_DIR_PREFIX.trim_end_matches('-'));
}
