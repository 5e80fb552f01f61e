//! The drill's schedule against the cluster (the leader killed, started
//! again, a switchover), and the order service's health watched meanwhile.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::{sync::watch, time::Instant};
use valerix_devdb::{HaCluster, Member};

use crate::ha;

use super::report::secs;

/// When the schedule's steps happened, since the start of the load.
#[derive(Debug, Default)]
pub(super) struct Times {
    pub(super) killed: Duration,
    pub(super) promoted: Duration,
    pub(super) rejoin_started: Duration,
    pub(super) rejoined: Duration,
    pub(super) switch_started: Duration,
    pub(super) switched: Duration,
}

pub(super) async fn run_schedule(
    cluster: &mut HaCluster,
    steady: Duration,
    start: Instant,
) -> anyhow::Result<Times> {
    let mut t = Times::default();
    tokio::time::sleep(steady).await;
    let old = cluster
        .leader()
        .await
        .context("no leader before the kill")?;
    t.killed = start.elapsed();
    cluster.kill_node(&old)?;
    say(
        start,
        &format!("SIGKILL {old} (the leader): its Patroni and PostgreSQL"),
    );
    let new = wait_for(
        "a standby to take over",
        Duration::from_secs(60),
        cluster,
        {
            let old = old.clone();
            async move |c| c.leader().await.filter(|l| *l != old)
        },
    )
    .await?;
    t.promoted = start.elapsed();
    say(
        start,
        &format!(
            "{new} leads ({} after the kill)",
            secs(t.promoted - t.killed)
        ),
    );

    tokio::time::sleep(steady).await;
    t.rejoin_started = start.elapsed();
    cluster.rejoin(&old)?;
    say(start, &format!("{old} started again"));
    wait_for(
        "the old leader to rejoin",
        Duration::from_secs(60),
        cluster,
        {
            let old = old.clone();
            async move |c| member(&c.members().await, &old).filter(|m| m.is_up() && !m.is_leader())
        },
    )
    .await?;
    t.rejoined = start.elapsed();
    say(
        start,
        &format!(
            "{old} follows {new} ({} after it started)",
            secs(t.rejoined - t.rejoin_started)
        ),
    );
    let candidate = wait_for(
        "a synchronous standby",
        Duration::from_secs(30),
        cluster,
        async |c| {
            c.members()
                .await
                .into_iter()
                .find(Member::is_sync_standby)
                .map(|m| m.name)
        },
    )
    .await?;

    tokio::time::sleep(steady).await;
    t.switch_started = start.elapsed();
    say(start, &format!("switchover {new} -> {candidate} (planned)"));
    cluster.switchover(&new, &candidate).await?;
    wait_for("the switchover", Duration::from_secs(60), cluster, {
        let candidate = candidate.clone();
        async move |c| c.leader().await.filter(|l| *l == candidate)
    })
    .await?;
    t.switched = start.elapsed();
    say(
        start,
        &format!(
            "{candidate} leads ({} after the switchover began)",
            secs(t.switched - t.switch_started)
        ),
    );
    tokio::time::sleep(steady).await;
    Ok(t)
}

/// Polls the order service's `/health` until the load stops: when its
/// database dependency was seen connected or not, since the start.
pub(super) async fn watch_health(
    order_url: String,
    start: Instant,
    mut stop: watch::Receiver<u32>,
) -> Vec<(Duration, bool)> {
    let http = reqwest::Client::new();
    let mut seen = Vec::new();
    while *stop.borrow_and_update() == 0 {
        let asked_at = start.elapsed();
        let connected = match http
            .get(format!("{order_url}/health"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
        {
            Ok(answer) => answer.json::<serde_json::Value>().await.ok().and_then(|h| {
                h["dependencies"]["database"]
                    .as_str()
                    .map(|s| s == "connected")
            }),
            Err(_) => None,
        };
        if let Some(connected) = connected {
            seen.push((asked_at, connected));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => {}
        }
    }
    seen
}

/// Waits until `check` yields something, polling every 100 ms.
pub(super) async fn wait_for<T>(
    what: &str,
    within: Duration,
    cluster: &HaCluster,
    check: impl AsyncFn(&HaCluster) -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check(cluster).await {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            bail!(
                "{what}: not within {}; cluster: {}",
                secs(within),
                ha::describe(cluster).await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(super) fn member(members: &[Member], name: &str) -> Option<Member> {
    members.iter().find(|m| m.name == name).cloned()
}

pub(super) fn say(start: Instant, what: &str) {
    println!("{:>7.1}s  {what}", start.elapsed().as_secs_f64());
}
