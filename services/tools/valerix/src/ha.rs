//! The highly available database of `valerix up --ha` and of the failover
//! drill: a throwaway [`HaCluster`] with the `valerix` database created
//! and migrated through HAProxy.

use std::time::Duration;

use anyhow::Context;
use clap::Args;
use sqlx::{Connection, PgConnection};
use valerix_devdb::{HaCluster, HaOptions};
use valerix_runtime::{config::DatabaseArgs, db};

#[derive(Debug, Clone, Args)]
pub struct HaArgs {
    /// Run PostgreSQL highly available: etcd, PostgreSQL nodes under
    /// Patroni with a synchronous standby, and HAProxy in front (needs
    /// patroni, etcd and haproxy installed)
    #[arg(long)]
    pub ha: bool,

    /// PostgreSQL nodes under Patroni with --ha (2 or 3)
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u8).range(2..=3))]
    pub ha_nodes: u8,

    /// Patroni's synchronous_mode_strict: never commit on one node alone,
    /// at the cost of refusing writes while no standby is in sync
    #[arg(long)]
    pub ha_strict: bool,
}

impl HaArgs {
    pub fn options(&self) -> HaOptions {
        HaOptions {
            nodes: usize::from(self.ha_nodes),
            strict: self.ha_strict,
        }
    }
}

/// Starts the cluster and brings the `valerix` database up to date through
/// HAProxy, so it is on every node.
pub async fn start(options: &HaOptions) -> anyhow::Result<HaCluster> {
    let cluster = HaCluster::start(options, Duration::from_secs(120))
        .await
        .context("starting the highly available PostgreSQL")?;
    let mut admin = connect(&cluster.url("postgres")).await?;
    sqlx::query("CREATE DATABASE valerix")
        .execute(&mut admin)
        .await
        .context("creating the valerix database")?;
    db::connect_and_migrate(&DatabaseArgs::from_url(cluster.url("valerix")))
        .await?
        .close()
        .await;
    Ok(cluster)
}

/// The first connection through HAProxy: its health check marks the
/// primary up within half a second of Patroni naming it.
async fn connect(url: &str) -> anyhow::Result<PgConnection> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match PgConnection::connect(url).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e).context("connecting through HAProxy");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// One line per member: `pg1 leader (timeline 1), pg2 sync_standby`.
pub async fn describe(cluster: &HaCluster) -> String {
    cluster
        .members()
        .await
        .iter()
        .map(|m| format!("{} {} ({})", m.name, m.role, m.state))
        .collect::<Vec<_>>()
        .join(", ")
}
