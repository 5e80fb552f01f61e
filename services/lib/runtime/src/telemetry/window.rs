//! A mean over a sliding time window, for `order_service_avg_latency_30s`:
//! the service's own view of the SLA, readable without a Prometheus.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which second (since `started`) this slot holds; stale slots are ignored.
    second: u64,
    sum: f64,
    count: u64,
}

/// Samples fall into one-second slots; the mean covers the slots of the
/// last `window` seconds, so memory is constant whatever the request rate.
#[derive(Debug)]
pub struct SlidingMean {
    started: Instant,
    slots: Mutex<Vec<Slot>>,
}

impl SlidingMean {
    pub fn new(window: Duration) -> Self {
        let n = window.as_secs().max(1) as usize;
        Self {
            started: Instant::now(),
            slots: Mutex::new(vec![Slot::default(); n]),
        }
    }

    fn second(&self, at: Instant) -> u64 {
        // Second 0 is reserved for "never written", so stale defaults never count.
        at.saturating_duration_since(self.started).as_secs() + 1
    }

    pub fn record(&self, value: f64) {
        self.record_at(Instant::now(), value);
    }

    pub fn record_at(&self, at: Instant, value: f64) {
        let second = self.second(at);
        let Ok(mut slots) = self.slots.lock() else {
            return;
        };
        let n = slots.len() as u64;
        let slot = &mut slots[(second % n) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                ..Slot::default()
            };
        }
        slot.sum += value;
        slot.count += 1;
    }

    /// The mean of the samples of the last window; 0 when there were none.
    pub fn mean(&self) -> f64 {
        self.mean_at(Instant::now())
    }

    pub fn mean_at(&self, at: Instant) -> f64 {
        let now = self.second(at);
        let Ok(slots) = self.slots.lock() else {
            return 0.0;
        };
        let n = slots.len() as u64;
        let (sum, count) = slots
            .iter()
            .filter(|s| s.second != 0 && s.second + n > now && s.second <= now)
            .fold((0.0, 0), |(sum, count), s| (sum + s.sum, count + s.count));
        if count == 0 { 0.0 } else { sum / count as f64 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_is_zero() {
        let w = SlidingMean::new(Duration::from_secs(30));
        assert_eq!(w.mean(), 0.0);
    }

    #[test]
    fn averages_the_window_and_forgets_what_left_it() {
        let w = SlidingMean::new(Duration::from_secs(30));
        let t0 = w.started;
        w.record_at(t0, 3.0);
        w.record_at(t0 + Duration::from_millis(500), 1.0);
        w.record_at(t0 + Duration::from_secs(10), 5.0);
        assert_eq!(w.mean_at(t0 + Duration::from_secs(10)), 3.0);
        // 29 s later the first second is still inside the 30 s window ...
        assert_eq!(w.mean_at(t0 + Duration::from_secs(29)), 3.0);
        // ... at 30 s it has left; only the sample at 10 s remains.
        assert_eq!(w.mean_at(t0 + Duration::from_secs(30)), 5.0);
        assert_eq!(w.mean_at(t0 + Duration::from_secs(39)), 5.0);
        assert_eq!(w.mean_at(t0 + Duration::from_secs(40)), 0.0);
    }

    #[test]
    fn a_reused_slot_starts_empty() {
        let w = SlidingMean::new(Duration::from_secs(2));
        let t0 = w.started;
        w.record_at(t0, 10.0);
        // Two seconds later the same slot index is reused for a new second.
        w.record_at(t0 + Duration::from_secs(2), 1.0);
        assert_eq!(w.mean_at(t0 + Duration::from_secs(2)), 1.0);
    }
}
