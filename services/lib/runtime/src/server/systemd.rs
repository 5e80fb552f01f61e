//! systemd integration: READY=1 only when the service can serve, WATCHDOG=1
//! only while it is really alive, STOPPING=1 on the way out, and STATUS=
//! lines saying what it is doing. Without NOTIFY_SOCKET every call is a
//! no-op, so the same binary runs anywhere.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// Answers whether the service's dependencies let it serve (its database
/// answers): what goes to `STATUS=` and readiness, never to the watchdog.
pub type Probe = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = bool> + Send>> + Send + Sync>;

fn notify(states: &[NotifyState<'_>]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(err) = sd_notify::notify(states) {
        tracing::warn!(%err, "sd_notify failed");
    }
}

pub fn status(text: &str) {
    notify(&[NotifyState::Status(text)]);
}

pub fn ready(text: &str) {
    notify(&[NotifyState::Ready, NotifyState::Status(text)]);
}

pub fn stopping() {
    notify(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining in-flight requests"),
    ]);
}

/// How long one probe may take: short enough that a slow probe never
/// stretches the gap between two pings to the watchdog timeout (at most 1.5
/// intervals = 3/4 of WATCHDOG_USEC), and no longer than 2 s.
fn probe_timeout(interval: Duration) -> Duration {
    (interval / 2).min(Duration::from_secs(2))
}

/// Whether the runtime still runs what is given to it: a task spawned now
/// must run within `deadline`. A runtime whose workers are all blocked (a
/// deadlock, a runaway loop on every worker) fails this even though the
/// ticking task itself got a turn.
async fn runtime_schedules(deadline: Duration) -> bool {
    matches!(
        tokio::time::timeout(deadline, tokio::spawn(async {})).await,
        Ok(Ok(()))
    )
}

/// Pings the watchdog at half of WATCHDOG_USEC (when systemd asked for one
/// and WATCHDOG_PID, if set, is us) while the process itself works: the
/// ticking task runs and the runtime schedules a fresh task within the
/// probe's deadline. A stopped (SIGSTOP) or wedged process stops pinging and
/// systemd restarts it.
///
/// The database is deliberately not part of it: when PostgreSQL restarts,
/// fails over or is cut off, every service would stop pinging at once and
/// systemd would kill them all, dropping their queues and adding a restart
/// storm to the outage. The services ride that out instead (503 with
/// Retry-After, the reconciler resuming by itself), so `readiness` (the
/// database probe) only drives `STATUS=`: "unhealthy: ..." while it fails,
/// `serving` again once it passes. A statement waiting on the database is
/// bounded by the pool's and the statements' own timeouts, not here: from
/// inside, a lane waiting for a slow database and a wedged lane look alike.
pub fn spawn_watchdog(readiness: Probe, serving: String) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let interval = period / 2;
    let deadline = probe_timeout(interval);
    tracing::info!(?interval, ?deadline, "systemd watchdog enabled");
    // The readiness probe runs on a task of its own: a database that hangs
    // must not delay a ping.
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let readiness_task = tokio::spawn({
        let ready = ready.clone();
        async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                let ok = tokio::time::timeout(deadline, readiness())
                    .await
                    .unwrap_or(false);
                let was = ready.swap(ok, std::sync::atomic::Ordering::Relaxed);
                if ok && !was {
                    tracing::info!("the database answers again");
                    status(&serving);
                } else if !ok && was {
                    tracing::error!(
                        ?deadline,
                        "the database does not answer: unhealthy (the watchdog keeps being fed)"
                    );
                    status(
                        "unhealthy: the database does not answer; requests get 503 until it does",
                    );
                }
            }
        }
    });
    Some(tokio::spawn(async move {
        // Ends the readiness task with this one (aborted on shutdown).
        struct AbortOnDrop(JoinHandle<()>);
        impl Drop for AbortOnDrop {
            fn drop(&mut self) {
                self.0.abort();
            }
        }
        let _readiness = AbortOnDrop(readiness_task);
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut alive = true;
        loop {
            ticker.tick().await;
            let ok = runtime_schedules(deadline).await;
            if ok {
                notify(&[NotifyState::Watchdog]);
                if !alive {
                    tracing::info!("the runtime schedules work again: watchdog pings resume");
                }
            } else if alive {
                tracing::error!(
                    ?deadline,
                    "the runtime did not run a task in time: withholding watchdog pings"
                );
            }
            alive = ok;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_working_runtime_schedules_within_the_deadline() {
        assert!(runtime_schedules(Duration::from_millis(500)).await);
    }

    #[test]
    fn a_slow_passing_probe_still_pings_in_time() {
        for usec in [20_000u64, 1_000_000, 30_000_000, 600_000_000] {
            let period = Duration::from_micros(usec);
            let interval = period / 2;
            // Worst gap between two pings: one interval plus a probe at its deadline.
            assert!(interval + probe_timeout(interval) < period, "{period:?}");
        }
    }
}
