//! systemd integration: READY=1 only when the service can serve, WATCHDOG=1
//! only while it is really alive, STOPPING=1 on the way out. Without
//! NOTIFY_SOCKET every call is a no-op, so the same binary runs anywhere.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use sd_notify::NotifyState;

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
        NotifyState::Status("draining in-flight requests"),
    ]);
}

/// Pings the watchdog at half of WATCHDOG_USEC, but only when `probe` passes:
/// a service whose database is gone stops pinging and systemd restarts it.
pub fn spawn_watchdog(probe: Probe) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let interval = period / 2;
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut healthy = true;
        loop {
            ticker.tick().await;
            let ok = tokio::time::timeout(interval.max(Duration::from_millis(100)), probe())
                .await
                .unwrap_or(false);
            if ok {
                notify(&[NotifyState::Watchdog]);
                if !healthy {
                    status("serving");
                }
            } else if healthy {
                tracing::error!("liveness probe failed: withholding watchdog pings");
                status("unhealthy: liveness probe failing");
            }
            healthy = ok;
        }
    });
}
