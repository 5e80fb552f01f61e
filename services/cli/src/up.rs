//! `valerix up`: the whole stack on localhost. A throwaway PostgreSQL (or the
//! one given), migrations, the services as child processes on the plan's
//! ports, demo products; Ctrl-C stops everything and removes the cluster.

use std::{process::Stdio, time::Duration};

use anyhow::{Context, bail};
use clap::Args;
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use sqlx::{Connection, PgConnection};
use tokio::process::{Child, Command};
use valerix_devdb::Cluster;
use valerix_runtime::{config::DatabaseArgs, db};

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
}

struct Proc {
    name: &'static str,
    url: String,
    child: Child,
}

async fn spawn(
    name: &'static str,
    sub: &str,
    listen: &str,
    db_url: Option<&str>,
    extra: &[String],
) -> anyhow::Result<Proc> {
    let exe = std::env::current_exe().context("locating the valerix binary")?;
    let child = Command::new(exe)
        .args(["service", sub, "--listen", listen])
        .args(
            db_url
                .map(|url| ["--database-url", url])
                .into_iter()
                .flatten(),
        )
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    Ok(Proc {
        name,
        url: format!("http://{listen}"),
        child,
    })
}

async fn wait_healthy(p: &mut Proc, deadline: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = p.child.try_wait()? {
            bail!("{} exited during start-up ({status})", p.name);
        }
        if let Ok(r) = http.get(format!("{}/health", p.url)).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("{} not healthy within {deadline:?}", p.name);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let (Some(gw_port), Some(pay_port)) =
        (args.base_port.checked_sub(1), args.base_port.checked_add(2))
    else {
        bail!("--base-port must leave room for the gateway before it and two services after it");
    };
    let [order_port, inv_port] = [0, 1].map(|i| args.base_port + i);
    let inv_listen = format!("{host}:{inv_port}");
    let pay_listen = format!("{host}:{pay_port}");
    let order_listen = format!("{host}:{order_port}");
    let gw_listen = format!("{host}:{gw_port}");
    let db = Some(db_url.as_str());
    let mut procs = vec![
        spawn("inventory-service", "inventory", &inv_listen, db, &[]).await?,
        spawn("payment-service", "payment", &pay_listen, db, &[]).await?,
    ];
    let downstreams = vec![
        "--inventory-url".to_owned(),
        format!("http://{inv_listen}"),
        "--payment-url".to_owned(),
        format!("http://{pay_listen}"),
    ];
    procs.push(spawn("order-service", "order", &order_listen, db, &downstreams).await?);
    for p in &mut procs {
        wait_healthy(p, Duration::from_secs(30)).await?;
    }
    let upstreams = [
        "--order-url".to_owned(),
        format!("http://{order_listen}"),
        "--inventory-url".to_owned(),
        format!("http://{inv_listen}"),
        "--payment-url".to_owned(),
        format!("http://{pay_listen}"),
    ];
    // First in the list: it is where a person starts.
    procs.insert(
        0,
        spawn("api-gateway", "gateway", &gw_listen, None, &upstreams).await?,
    );
    wait_healthy(&mut procs[0], Duration::from_secs(30)).await?;
    if !args.no_seed {
        let created = crate::seed::seed(&format!("http://{inv_listen}")).await?;
        if !created.is_empty() {
            println!("Seeded demo products: {}", created.join(", "));
        }
    }

    println!();
    println!("Valerix is up.");
    for p in &procs {
        let url = &p.url;
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
    println!();
    println!(
        "Try:  curl -s -X POST {}/api/orders -H 'content-type: application/json' \\",
        procs[0].url
    );
    println!("        -d '{{\"product_id\":\"PROD-1\",\"quantity\":1}}'");
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
        if let Some(pid) = p.child.id() {
            let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        }
    }
    for p in &mut procs {
        let _ = tokio::time::timeout(Duration::from_secs(15), p.child.wait()).await;
    }
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
async fn wait_for_stop(procs: &mut [Proc]) -> Option<&'static str> {
    let any_exit = async {
        loop {
            for p in procs.iter_mut() {
                if let Ok(Some(_)) = p.child.try_wait() {
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
