//! Keeping a stack alive the way systemd keeps the NixOS module's units
//! (`Restart=on-failure`, `RestartSec`, start-rate limits): a service that
//! exits is started again after a delay, the delay doubling while it keeps
//! dying soon after starting; one that cannot start at all is given up on
//! after a few tries in a row, and the rest keeps running.

use std::{
    future::Future,
    process::ExitStatus,
    time::{Duration, Instant},
};

use crate::{Stack, process::LaunchError};

#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Delay before a restart (systemd's `RestartSec`).
    pub delay: Duration,
    /// The delay doubles for each restart of a service that ran for less
    /// than `stable_after`, up to this.
    pub max_delay: Duration,
    pub stable_after: Duration,
    /// Starts in a row that fail (the process exits before READY=1 or is
    /// not ready in time) before the service is given up on.
    pub failed_starts: u32,
}

impl Default for RestartPolicy {
    fn default() -> Self {
        Self {
            delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            stable_after: Duration::from_secs(10),
            failed_starts: 5,
        }
    }
}

/// What happened to a service, for the person watching.
#[derive(Debug)]
pub enum Event {
    Exited {
        name: String,
        status: ExitStatus,
        restart_in: Duration,
    },
    Restarted {
        name: String,
        restarts: u32,
    },
    StartFailed {
        name: String,
        error: LaunchError,
        retry_in: Duration,
    },
    GaveUp {
        name: String,
        error: LaunchError,
        attempts: u32,
    },
}

impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Exited {
                name,
                status,
                restart_in,
            } => write!(f, "{name} exited ({status}); restarting in {restart_in:?}"),
            Event::Restarted { name, restarts } => {
                write!(f, "{name} restarted and ready (restart {restarts})")
            }
            Event::StartFailed {
                name,
                error,
                retry_in,
            } => write!(
                f,
                "{name} did not start: {error}; trying again in {retry_in:?}"
            ),
            Event::GaveUp {
                name,
                error,
                attempts,
            } => write!(
                f,
                "{name} failed to start {attempts} times in a row; giving up on it, the rest keeps running. Last error: {error}"
            ),
        }
    }
}

struct Watch {
    restarts: u32,
    delay: Duration,
    failed_starts: u32,
    ready_at: Instant,
    due: Option<Instant>,
    given_up: bool,
}

/// The supervision state of one stack's processes, in the stack's order.
pub struct Supervisor {
    policy: RestartPolicy,
    watches: Vec<Watch>,
}

/// How often exits are looked for.
const TICK: Duration = Duration::from_millis(100);

impl Supervisor {
    pub fn new(stack: &Stack, policy: RestartPolicy) -> Self {
        let now = Instant::now();
        Self {
            policy,
            watches: stack
                .iter()
                .map(|_| Watch {
                    restarts: 0,
                    delay: policy.delay,
                    failed_starts: 0,
                    ready_at: now,
                    due: None,
                    given_up: false,
                })
                .collect(),
        }
    }

    /// Restarts so far of the process called `name`.
    pub fn restarts(&self, stack: &Stack, name: &str) -> u32 {
        stack
            .iter()
            .zip(&self.watches)
            .find(|(p, _)| p.name == name)
            .map_or(0, |(_, w)| w.restarts)
    }

    /// Watches `stack` until `stop` resolves, telling `report` what it does.
    pub async fn run(
        &mut self,
        stack: &mut Stack,
        stop: impl Future<Output = ()>,
        mut report: impl FnMut(&Event),
    ) {
        let stop = std::pin::pin!(stop);
        let mut stop = stop;
        loop {
            tokio::select! {
                () = &mut stop => return,
                () = tokio::time::sleep(TICK) => {}
            }
            let policy = self.policy;
            for (p, w) in stack.iter_mut().zip(self.watches.iter_mut()) {
                if w.given_up {
                    continue;
                }
                if w.due.is_none()
                    && let Some(status) = p.exit_status()
                {
                    w.delay = if w.ready_at.elapsed() < policy.stable_after {
                        (w.delay * 2).min(policy.max_delay)
                    } else {
                        policy.delay
                    };
                    w.due = Some(Instant::now() + w.delay);
                    report(&Event::Exited {
                        name: p.name.clone(),
                        status,
                        restart_in: w.delay,
                    });
                }
                let Some(due) = w.due else { continue };
                if Instant::now() < due {
                    continue;
                }
                let started = tokio::select! {
                    () = &mut stop => return,
                    started = p.start() => started,
                };
                match started {
                    Ok(()) => {
                        w.restarts += 1;
                        w.failed_starts = 0;
                        w.ready_at = Instant::now();
                        w.due = None;
                        report(&Event::Restarted {
                            name: p.name.clone(),
                            restarts: w.restarts,
                        });
                    }
                    Err(error) => {
                        // Not left half-started: a process that is not
                        // ready in time is stopped before the next try.
                        p.sigkill();
                        w.failed_starts += 1;
                        if w.failed_starts >= policy.failed_starts {
                            w.given_up = true;
                            report(&Event::GaveUp {
                                name: p.name.clone(),
                                error,
                                attempts: w.failed_starts,
                            });
                        } else {
                            w.delay = (w.delay * 2).min(policy.max_delay);
                            w.due = Some(Instant::now() + w.delay);
                            report(&Event::StartFailed {
                                name: p.name.clone(),
                                error,
                                retry_in: w.delay,
                            });
                        }
                    }
                }
            }
        }
    }
}
