//! What the failover drill measured, from the load's tally and the
//! schedule's times, and how it is printed.

use std::{collections::BTreeMap, time::Duration};

use valerix_load::{follow::Followed, tally::Tally};

use crate::audit;

use super::schedule::Times;

/// What the drill measured.
#[derive(Debug, Default)]
pub struct FailoverReport {
    pub sent: u64,
    /// Orders answered 201 or 202.
    pub acknowledged: u64,
    pub followed: Followed,
    /// From the SIGKILL until the first order sent after it was answered CONFIRMED.
    pub confirmed_again_after: Option<Duration>,
    /// From the SIGKILL until a standby led.
    pub promoted_after: Duration,
    /// From starting the lost node again until it streamed from the new leader.
    pub rejoined_after: Duration,
    /// The longest time without a CONFIRMED answer around the switchover.
    pub switchover_pause: Option<Duration>,
    /// Answers that were not 201/202 (status and problem type, or the
    /// transport failure), during the failover and over the whole run.
    pub gap_errors: BTreeMap<String, u64>,
    pub all_errors: BTreeMap<String, u64>,
    pub audit_violations: Vec<String>,
    pub double_charges: i64,
    /// Services whose process exited during the drill (each would have
    /// needed a restart).
    pub services_exited: Vec<String>,
    /// Confirmed orders and error answers by when the orders were due.
    pub timeline: Vec<Slot>,
    /// When the order service's health said the database went and came
    /// back, since the kill.
    pub health: HealthChanges,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct HealthChanges {
    pub disconnected_after: Option<Duration>,
    pub connected_again_after: Option<Duration>,
}

impl FailoverReport {
    pub fn passed(&self) -> bool {
        self.followed.is_clean()
            && self.confirmed_again_after.is_some()
            && self.audit_violations.is_empty()
            && self.double_charges == 0
            && self.services_exited.is_empty()
    }

    /// The drill's last line.
    pub fn last_line(&self) -> String {
        format!(
            "failover: {} acknowledged, {} lost, orders confirmed again after {}",
            self.acknowledged,
            self.followed.lost,
            match self.confirmed_again_after {
                Some(d) => format!("{:.1} s", d.as_secs_f64()),
                None => "never".to_owned(),
            }
        )
    }
}

/// The first "disconnected" after the kill, and the first "connected"
/// after that.
pub(super) fn health_changes(seen: &[(Duration, bool)], killed: Duration) -> HealthChanges {
    let down = seen
        .iter()
        .find(|(at, up)| *at >= killed && !up)
        .map(|(at, _)| *at);
    let up = down.and_then(|d| {
        seen.iter()
            .find(|(at, up)| *at > d && *up)
            .map(|(at, _)| *at)
    });
    HealthChanges {
        disconnected_after: down.map(|d| d - killed),
        connected_again_after: up.map(|u| u - killed),
    }
}

pub(super) fn measure(
    tally: &Tally,
    t: &Times,
    followed: Followed,
    audited: audit::Report,
    double_charges: i64,
    services_exited: Vec<String>,
) -> FailoverReport {
    // The first order sent after the kill that was confirmed.
    let confirmed_again = tally
        .confirmations
        .iter()
        .filter(|(due, _)| *due >= t.killed)
        .map(|(_, answered)| *answered)
        .min();
    let confirmed_again_after = confirmed_again.map(|at| at.saturating_sub(t.killed));
    let gap_end = confirmed_again.unwrap_or(t.rejoin_started);
    let mut gap_errors = BTreeMap::new();
    let mut timeline = Vec::new();
    for a in tally
        .affected
        .iter()
        .filter(|a| !a.first_answer.starts_with('2'))
    {
        let at = Duration::from_secs_f64(a.at_s);
        if at >= t.killed && at <= gap_end {
            *gap_errors.entry(a.first_answer.clone()).or_default() += 1;
        }
        slot(&mut timeline, at).errors += 1;
    }
    for (due, _) in &tally.confirmations {
        slot(&mut timeline, *due).confirmed += 1;
    }
    let all_errors = tally
        .codes
        .iter()
        .filter(|(code, _)| !matches!(code.as_str(), "201" | "202"))
        .map(|(code, n)| (code.clone(), *n))
        .collect();
    // Around the switchover: the longest wait between two confirmations.
    let mut answers: Vec<Duration> = tally
        .confirmations
        .iter()
        .map(|(_, answered)| *answered)
        .filter(|at| *at >= t.switch_started && *at <= t.switched + Duration::from_secs(5))
        .collect();
    answers.sort();
    let switchover_pause = answers.windows(2).map(|w| w[1] - w[0]).max();
    FailoverReport {
        sent: tally.sent,
        acknowledged: tally.acknowledged,
        followed,
        confirmed_again_after,
        promoted_after: t.promoted - t.killed,
        rejoined_after: t.rejoined - t.rejoin_started,
        switchover_pause,
        gap_errors,
        all_errors,
        audit_violations: audited
            .violations
            .iter()
            .map(|v| format!("[{}] {}", v.invariant, v.detail))
            .collect(),
        double_charges,
        services_exited,
        timeline,
        health: HealthChanges::default(),
    }
}

/// Seconds per row of the timeline.
pub(super) const SLOT_SECS: f64 = 2.0;

/// What the orders due in one slot of the run came to.
#[derive(Debug, Default, Clone, Copy)]
pub struct Slot {
    pub confirmed: u64,
    pub errors: u64,
}

pub(super) fn slot(timeline: &mut Vec<Slot>, due: Duration) -> &mut Slot {
    let i = (due.as_secs_f64() / SLOT_SECS) as usize;
    if timeline.len() <= i {
        timeline.resize(i + 1, Slot::default());
    }
    &mut timeline[i]
}

pub(super) fn counts(errors: &BTreeMap<String, u64>) -> String {
    if errors.is_empty() {
        return "none".to_owned();
    }
    errors
        .iter()
        .map(|(label, n)| format!("{n} × {label}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

/// Prints the report; its last line is [`FailoverReport::last_line`].
pub fn print(r: &FailoverReport) {
    println!();
    println!("orders due at   confirmed  errors");
    for (i, s) in r.timeline.iter().enumerate() {
        println!(
            "  {:>5.0}-{:<3.0}s {:>9} {:>7}",
            i as f64 * SLOT_SECS,
            (i + 1) as f64 * SLOT_SECS,
            s.confirmed,
            s.errors
        );
    }
    println!();
    println!(
        "orders:       {} sent, {} acknowledged (201/202); {} lost, {} unsettled, {} changed after a settled answer",
        r.sent, r.acknowledged, r.followed.lost, r.followed.stuck, r.followed.changed
    );
    println!(
        "failover:     a standby led {} after the kill; orders confirmed again {} (goal: under 12 s)",
        secs(r.promoted_after),
        r.confirmed_again_after
            .map_or("never".to_owned(), |d| format!("{} after it", secs(d)))
    );
    println!("  in the gap: {}", counts(&r.gap_errors));
    println!(
        "  health:     the order service's /health said the database was disconnected {}, connected again {}",
        r.health
            .disconnected_after
            .map_or("never".to_owned(), |d| format!(
                "{} after the kill",
                secs(d)
            )),
        r.health
            .connected_again_after
            .map_or("never".to_owned(), |d| format!("{} after it", secs(d))),
    );
    println!(
        "rejoin:       the old leader followed the new one {} after it was started",
        secs(r.rejoined_after)
    );
    println!(
        "switchover:   longest wait between two confirmed orders {}",
        r.switchover_pause.map_or("n/a".to_owned(), secs)
    );
    println!("errors, whole run: {}", counts(&r.all_errors));
    println!(
        "errors resolved by a retry with the same Idempotency-Key: {}",
        r.followed.resolved
    );
    println!(
        "audit:        {}; double charges: {}",
        if r.audit_violations.is_empty() {
            "clean".to_owned()
        } else {
            format!("{} violation(s)", r.audit_violations.len())
        },
        r.double_charges
    );
    for v in r.audit_violations.iter().take(10) {
        println!("  {v}");
    }
    println!(
        "services:     {}",
        if r.services_exited.is_empty() {
            "none exited, none restarted".to_owned()
        } else {
            format!("exited: {}", r.services_exited.join(", "))
        }
    );
    println!("{}", r.last_line());
}
