//! Each service's process as the gateway sees it through its health: since
//! when it runs, and how often a new process has taken its place (a crash
//! and a restart by systemd or `valerix up`, or a deploy). Learnt from the
//! `started_at` of every health document the gateway reads, so it needs no
//! word from whatever restarts the services.

use std::{
    collections::BTreeMap,
    sync::{Mutex, PoisonError},
};

use chrono::{DateTime, Utc};
use poem_openapi::Object;
use valerix_runtime::contract::health::Health;

/// One service's process, as far as the gateway has seen it.
#[derive(Debug, Clone, Default, PartialEq, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Lifetime {
    /// When the service's current process started serving (its health's
    /// `started_at`). Absent until it has answered the gateway once.
    pub up_since: Option<DateTime<Utc>>,
    /// How many times, since the gateway started, the service answered as a
    /// new process (a later `started_at` than before).
    pub restarts: u32,
    /// When the gateway first saw the newest of those restarts.
    pub last_restart: Option<DateTime<Utc>>,
}

#[derive(Debug, Default)]
pub struct Lifetimes {
    seen: Mutex<BTreeMap<String, Lifetime>>,
}

impl Lifetimes {
    /// A health document the gateway read from `service`; None when it did
    /// not answer (which changes nothing: a service that is down keeps its
    /// count until it answers again).
    pub fn observe(&self, service: &str, health: Option<&Health>) {
        let started = health.and_then(|h| h.started_at);
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let lifetime = seen.entry(service.to_owned()).or_default();
        let Some(started) = started else {
            return;
        };
        match lifetime.up_since {
            // An earlier start than the one known is an older answer that
            // arrived late, not a restart.
            Some(known) if started <= known => {}
            Some(_) => {
                lifetime.restarts += 1;
                lifetime.last_restart = Some(Utc::now());
                lifetime.up_since = Some(started);
            }
            None => lifetime.up_since = Some(started),
        }
    }

    /// Every service seen so far.
    pub fn snapshot(&self) -> BTreeMap<String, Lifetime> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn health(started: DateTime<Utc>) -> Health {
        let mut h = Health::new("inventory-service");
        h.started_at = Some(started);
        h
    }

    #[test]
    fn counts_each_new_process_once() {
        let l = Lifetimes::default();
        let first = Utc::now() - TimeDelta::seconds(60);
        let second = first + TimeDelta::seconds(30);
        l.observe("inventory-service", None);
        assert_eq!(l.snapshot()["inventory-service"], Lifetime::default());
        l.observe("inventory-service", Some(&health(first)));
        l.observe("inventory-service", Some(&health(first)));
        assert_eq!(l.snapshot()["inventory-service"].restarts, 0);
        assert_eq!(l.snapshot()["inventory-service"].up_since, Some(first));

        // Down for a while, then back as a new process: one restart.
        l.observe("inventory-service", None);
        l.observe("inventory-service", Some(&health(second)));
        l.observe("inventory-service", Some(&health(second)));
        let now = l.snapshot()["inventory-service"].clone();
        assert_eq!(now.restarts, 1);
        assert_eq!(now.up_since, Some(second));
        assert!(now.last_restart.is_some());

        // A late answer from the old process is no restart.
        l.observe("inventory-service", Some(&health(first)));
        assert_eq!(l.snapshot()["inventory-service"], now);
    }
}
