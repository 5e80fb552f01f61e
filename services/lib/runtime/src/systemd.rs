//! systemd integration: READY=1 only when the service can serve, WATCHDOG=1
//! only while it is really alive, STOPPING=1 on the way out, and STATUS=
//! lines saying what it is doing. Without NOTIFY_SOCKET every call is a
//! no-op, so the same binary runs anywhere.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

/// Answers whether the service is alive enough to keep its watchdog fed.
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

/// How long one probe may take: short enough that a slow but passing probe
/// never stretches the gap between two pings to the watchdog timeout (at
/// most 1.5 intervals = 3/4 of WATCHDOG_USEC), and no longer than 2 s.
fn probe_timeout(interval: Duration) -> Duration {
    (interval / 2).min(Duration::from_secs(2))
}

/// Pings the watchdog at half of WATCHDOG_USEC (when systemd asked for one
/// and WATCHDOG_PID, if set, is us), but only while `probe` passes within
/// its deadline: a service whose database is gone stops pinging and systemd
/// restarts it. `serving` is the STATUS= line to restore on recovery.
pub fn spawn_watchdog(probe: Probe, serving: String) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let interval = period / 2;
    let deadline = probe_timeout(interval);
    tracing::info!(?interval, ?deadline, "systemd watchdog enabled");
    Some(tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        loop {
            ticker.tick().await;
            // The task itself running proves the runtime schedules work;
            // the probe proves the database answers.
            let ok = tokio::time::timeout(deadline, probe())
                .await
                .unwrap_or(false);
            if ok {
                notify(&[NotifyState::Watchdog]);
                if !healthy {
                    tracing::info!("liveness probe passes again: watchdog pings resume");
                    status(&serving);
                }
            } else if healthy {
                tracing::error!(
                    ?deadline,
                    "liveness probe failed: withholding watchdog pings"
                );
                status("unhealthy: liveness probe failing; withholding watchdog pings");
            }
            healthy = ok;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
