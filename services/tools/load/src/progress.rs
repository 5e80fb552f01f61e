//! What the run shows while it goes: a progress bar on a terminal (rate,
//! errors, pending, in flight), a line every few seconds otherwise, and the
//! run's events (gremlin on/off, the first affected order of each kind)
//! printed as they happen and kept for the report.

use std::{
    collections::VecDeque,
    io::IsTerminal,
    sync::{Arc, Mutex, atomic::Ordering},
    time::Duration,
};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;
use tokio::{task::JoinHandle, time::Instant};

use super::drive::{Live, Plan, Until};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressMode {
    /// A bar on a terminal, lines otherwise
    Auto,
    Bar,
    /// A status line every 5 s (logs, CI)
    Lines,
    None,
}

/// Something that happened during the run, at `at_s` seconds.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub at_s: f64,
    pub what: String,
}

pub struct Progress {
    mode: ProgressMode,
    bar: ProgressBar,
    start: Instant,
    events: Mutex<Vec<Event>>,
}

const LINE_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    pub fn new(mode: ProgressMode, plan: &Plan, start: Instant) -> Arc<Self> {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressMode::Auto => ProgressMode::Lines,
            m => m,
        };
        let bar = if mode == ProgressMode::Bar {
            let len = match plan.until {
                Until::Elapsed(d) => d.as_millis() as u64,
                Until::Orders(n) => n,
            };
            let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{prefix:>14} [{bar:30.cyan/blue}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Arc::new(Self {
            mode,
            bar,
            start,
            events: Mutex::new(Vec::new()),
        })
    }

    fn say(&self, line: &str) {
        match self.mode {
            ProgressMode::Bar => self.bar.println(line),
            ProgressMode::Lines => eprintln!("{line}"),
            _ => {}
        }
    }

    /// Records an event and shows it above the bar.
    pub fn event(&self, what: impl Into<String>) {
        let at_s = self.start.elapsed().as_secs_f64();
        self.event_at(at_s, what);
    }

    pub fn event_at(&self, at_s: f64, what: impl Into<String>) {
        let what = what.into();
        self.say(&format!("[{at_s:>6.1}s] {what}"));
        if let Ok(mut e) = self.events.lock() {
            e.push(Event { at_s, what });
        }
    }

    pub fn events(&self) -> Vec<Event> {
        let mut e = self.events.lock().map(|e| e.clone()).unwrap_or_default();
        e.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
        e
    }

    /// Updates the display until aborted.
    pub fn spawn_ticker(self: &Arc<Self>, live: Arc<Live>, until: Until) -> JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            // Requests done over the last second, for the current rate.
            let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
            let mut last_line = Instant::now();
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let now = Instant::now();
                window.push_back((now, live.done.load(Ordering::Relaxed)));
                while window
                    .front()
                    .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(1))
                {
                    window.pop_front();
                }
                let rate = match (window.front(), window.back()) {
                    (Some((t0, a0)), Some((t1, a1))) if t1 > t0 => {
                        (a1 - a0) as f64 / t1.duration_since(*t0).as_secs_f64()
                    }
                    _ => 0.0,
                };
                let status = format!(
                    "{rate:>6.0}/s  ok {}  errors {}  pending {}  in flight {}",
                    live.acknowledged.load(Ordering::Relaxed),
                    live.errors.load(Ordering::Relaxed),
                    live.pending.load(Ordering::Relaxed),
                    live.in_flight.load(Ordering::Relaxed),
                );
                let elapsed = now.duration_since(me.start);
                match me.mode {
                    ProgressMode::Bar => {
                        let (pos, prefix) = match until {
                            Until::Elapsed(d) => (
                                elapsed.as_millis() as u64,
                                format!("{:.0}s/{:.0}s", elapsed.as_secs_f64(), d.as_secs_f64()),
                            ),
                            Until::Orders(n) => {
                                let sent = live.sent.load(Ordering::Relaxed);
                                (sent, format!("{sent}/{n}"))
                            }
                        };
                        me.bar.set_position(pos);
                        me.bar.set_prefix(prefix);
                        me.bar.set_message(status);
                    }
                    ProgressMode::Lines if now.duration_since(last_line) >= LINE_EVERY => {
                        last_line = now;
                        eprintln!(
                            "[{:>6.1}s] sent {}  {status}",
                            elapsed.as_secs_f64(),
                            live.sent.load(Ordering::Relaxed)
                        );
                    }
                    _ => {}
                }
            }
        })
    }

    /// The load is over; what follows is a phase without a bar.
    pub fn finish_load(&self) {
        self.bar.finish_and_clear();
    }

    /// A status line for a later phase (following orders).
    pub fn status(&self, line: &str) {
        if self.mode != ProgressMode::None {
            eprintln!("{line}");
        }
    }
}
