//! The gremlin scenario: the inventory service's latency gremlin on at a
//! given time into the run and off again after a while, so the run shows
//! what slow inventory does to orders (and how they recover).

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::{sync::watch, time::Instant};

use super::{drive::stopped, progress::Progress, target::InventoryControl};

#[derive(Debug, Clone, Copy, Serialize)]
pub struct GremlinWindow {
    /// Since the start of the run.
    #[serde(serialize_with = "secs")]
    pub at: Duration,
    #[serde(serialize_with = "secs", rename = "for")]
    pub length: Duration,
    pub delay_ms: u64,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl GremlinWindow {
    pub fn describe(&self) -> String {
        format!(
            "inventory latency +{} ms from {:.1} s for {:.1} s",
            self.delay_ms,
            self.at.as_secs_f64(),
            self.length.as_secs_f64()
        )
    }
}

/// Runs the window against the run's clock. Returns whether the gremlin may
/// still be on (the run stopped inside the window, or turning it off failed),
/// so the caller turns it off for good.
pub async fn run(
    inventory: InventoryControl,
    window: GremlinWindow,
    start: Instant,
    mut stop: watch::Receiver<u32>,
    progress: Arc<Progress>,
) -> bool {
    if !reached(start + window.at, &mut stop).await {
        return false;
    }
    match inventory.set_latency(window.delay_ms, true).await {
        Ok(()) => progress.event(format!(
            "inventory latency gremlin ON (+{} ms)",
            window.delay_ms
        )),
        Err(e) => {
            progress.event(format!("could not turn the inventory gremlin on: {e:#}"));
            return false;
        }
    }
    let finished = reached(start + window.at + window.length, &mut stop).await;
    if !finished {
        return true;
    }
    match inventory.set_latency(window.delay_ms, false).await {
        Ok(()) => {
            progress.event("inventory latency gremlin OFF");
            false
        }
        Err(e) => {
            progress.event(format!("could not turn the inventory gremlin off: {e:#}"));
            true
        }
    }
}

/// Whether `t` came before a request to stop.
async fn reached(t: Instant, stop: &mut watch::Receiver<u32>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep_until(t) => true,
        _ = stopped(stop) => false,
    }
}
