//! The Markdown report of a run: what ran where, the ratio table, the
//! objectives, CPU and context switches per order, the open model.

use std::fmt::Write as _;

use valerix_load::tally::Percentiles;
use valerix_stack::process::{WORKER_THREADS, colocated_worker_threads};

use crate::{
    BenchArgs, Mix, Transport, gateway,
    measure::{Cell, OpenRun},
    objectives,
    stack::Stack,
};

/// The 1-minute load average, to state how busy the machine was.
pub(crate) fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(crate) fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU".to_owned(), |(_, m)| m.trim().to_owned());
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or("? GiB".to_owned(), |kb| {
            format!("{:.0} GiB", kb as f64 / 1048576.0)
        });
    format!("{cpus} CPUs ({model}), {mem} RAM")
}

pub(crate) fn mix_name(mix: Mix, spread: usize) -> String {
    match mix {
        Mix::Hot => "hot (1 product)".to_owned(),
        Mix::Spread => format!("spread ({spread} products)"),
    }
}

pub(crate) fn markdown(
    args: &BenchArgs,
    stack: &Stack,
    pg: &str,
    (started, load): (chrono::DateTime<chrono::Utc>, (Option<f64>, Option<f64>)),
    cells: &[Cell],
    costs: &[gateway::GatewayCell],
    open: &[OpenRun],
) -> String {
    let mut m = String::new();
    let _ = writeln!(
        m,
        "## Valerix benchmark, {}\n",
        started.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = writeln!(
        m,
        "- machine: {}; PostgreSQL {pg}{}; {} build",
        machine(),
        match (stack.is_own(), args.durable) {
            (true, true) => {
                " (throwaway cluster, durable: fsync, synchronous_commit and full_page_writes on; `--durable`)"
            }
            (true, false) => " (throwaway cluster: fsync off, synchronous_commit off)",
            (false, _) => "",
        },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    if let (Some(at_start), Some(at_end)) = load {
        // The benchmark's own processes raise it: a durable run counts every
        // process waiting for a flush.
        let _ = writeln!(
            m,
            "- machine load (1-minute average, `/proc/loadavg`): {at_start:.1} when the run started, {at_end:.1} when it ended"
        );
    }
    let _ = writeln!(
        m,
        "- end to end: `POST {}/orders` (order service → inventory and payment over HTTP), closed model: N clients back to back",
        stack.target
    );
    if !args.gateway_only {
        let _ = writeln!(
            m,
            "- database-only: the same SQL through the services' store code (create, reserve, charge, commit, settle), N tasks on N connections, no HTTP"
        );
    }
    if stack.is_own() {
        // What a service process sees: --service-env, else our environment
        // (inherited), else the default.
        let setting = |key: &str, default: String| {
            args.service_env
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .or_else(|| std::env::var(key).ok())
                .unwrap_or(default)
        };
        let workers = setting(WORKER_THREADS, colocated_worker_threads().to_string());
        let pool = setting(
            "VALERIX_DB_POOL_SIZE",
            valerix_runtime::config::DEFAULT_POOL_SIZE.to_string(),
        );
        let _ = writeln!(
            m,
            "- each service process: {workers} tokio worker thread(s) (`{WORKER_THREADS}`), a pool of up to {pool} database connections (`VALERIX_DB_POOL_SIZE`)"
        );
        let _ = writeln!(
            m,
            "- the services call each other and reach PostgreSQL (as does the bound) over {}",
            match args.transport {
                Transport::Unix => "Unix domain sockets (`--transport unix`)",
                Transport::Tcp => "loopback TCP (`--transport tcp`)",
            }
        );
    }
    let _ = writeln!(
        m,
        "- each measurement: {:.1} s warm-up, {:.1} s measured, {}; orders of 1 unit; every service and the load generator share the machine{}\n",
        args.warmup.as_secs_f64(),
        args.duration.as_secs_f64(),
        // `reset` empties only a cluster of our own.
        if stack.is_own() {
            "from empty tables"
        } else {
            "on the running stack's tables as they are (not emptied)"
        },
        if args.service_env.is_empty() {
            String::new()
        } else {
            format!(
                "; service environment: {}",
                args.service_env
                    .iter()
                    .map(|(k, v)| format!("`{k}={v}`"))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        }
    );
    if !cells.is_empty() {
        main_table(&mut m, args, stack, cells);
    }
    if !costs.is_empty() {
        let _ = writeln!(
            m,
            "\nThe API gateway's cost: `POST /orders` straight at the order service against `POST /api/orders` through the gateway, the same clients.\n\n{}",
            gateway::table(costs, args.spread, args.rounds.max(1))
        );
    }
    let closed: Vec<objectives::Closed> = cells
        .iter()
        .map(|c| objectives::Closed {
            mix: c.mix,
            via_gateway: c.via_gateway,
            clients: c.concurrency,
            ratio: c.ratio(),
            p99_ms: c.e2e.median().pct().p99,
        })
        .collect();
    let half: Vec<objectives::Half> = open
        .iter()
        .filter(|r| r.at_half_of_peak())
        .map(|r| objectives::Half {
            mix: r.mix,
            via_gateway: r.via_gateway,
            p99_ms: r.p99(),
        })
        .collect();
    let costs: Vec<objectives::Gateway> = costs
        .iter()
        .map(|c| objectives::Gateway {
            mix: c.mix,
            clients: c.clients,
            ratio: c.ratio(),
            p99_ms: c.via.median().pct().p99,
            direct_p99_ms: c.direct.median().pct().p99,
        })
        .collect();
    if let Some(table) = objectives::table(&closed, &half, &costs) {
        let _ = writeln!(
            m,
            "\nThe objectives, judged against this run (the half-of-peak figures are the open model's, below):\n\n{table}"
        );
    }
    if cells.iter().any(|c| c.db.median().cpu.is_some()) {
        let _ = writeln!(
            m,
            "\nCPU per confirmed order (µs), from /proc: where the time goes.\n\n| mix | N | database-only: PostgreSQL | client | total | end-to-end: PostgreSQL | services | client | total |\n|---|---|---|---|---|---|---|---|---|"
        );
        for c in cells.iter().filter(|c| !c.via_gateway) {
            let (Some(d), Some(e)) = (
                c.db.median().cpu_per_order(),
                c.e2e.median().cpu_per_order(),
            ) else {
                continue;
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
                mix_name(c.mix, args.spread),
                c.concurrency,
                d.0,
                d.2,
                d.0 + d.1 + d.2,
                e.0,
                e.1,
                e.2,
                e.0 + e.1 + e.2
            );
        }
        let _ = writeln!(
            m,
            "\nContext switches per confirmed order, from /proc (a thread put to sleep to wait for a message and woken again, or preempted): the hand-overs.\n\n| mix | N | database-only: PostgreSQL | client | end-to-end: PostgreSQL | services | client |\n|---|---|---|---|---|---|---|"
        );
        for c in cells.iter().filter(|c| !c.via_gateway) {
            let (Some(d), Some(e)) = (
                c.db.median().switches_per_order(),
                c.e2e.median().switches_per_order(),
            ) else {
                continue;
            };
            let _ = writeln!(
                m,
                "| {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
                mix_name(c.mix, args.spread),
                c.concurrency,
                d.0,
                d.2,
                e.0,
                e.1,
                e.2
            );
        }
    }
    if !open.is_empty() {
        let _ = writeln!(
            m,
            "\nOpen model (orders arrive at a fixed rate; latency from when each was due, so queueing counts):\n\n| mix | load | offered/s | confirmed/s | answered 202 (pending) | shed (503) | other errors | p50 ms | p99 ms | p99.9 ms | max ms |\n|---|---|---|---|---|---|---|---|---|---|---|"
        );
        for r in open {
            let p = Percentiles::of(&r.tally.ok);
            let confirmed = r.tally.statuses.get("CONFIRMED").copied().unwrap_or(0);
            let load = if r.at_half_of_peak() {
                if r.via_gateway {
                    "half of peak, through the gateway".to_owned()
                } else {
                    "half of peak".to_owned()
                }
            } else {
                format!(
                    "{:.1}x peak{}",
                    r.rate / r.peak,
                    if r.shedding { "" } else { ", shedding off" }
                )
            };
            let pending: u64 = r
                .tally
                .statuses
                .iter()
                .filter(|(s, _)| s.starts_with("PENDING"))
                .map(|(_, n)| n)
                .sum();
            let p99 = match (r.p99_of_rounds.first(), r.p99_of_rounds.last()) {
                (Some(lo), Some(hi)) if r.p99_of_rounds.len() > 1 => {
                    format!("{:.1} ({lo:.1}–{hi:.1})", p.p99)
                }
                _ => format!("{:.1}", p.p99),
            };
            let _ = writeln!(
                m,
                "| {} | {load} | {:.0} | {:.0} | {pending} | {} ({:.0}%) | {} | {:.1} | {p99} | {:.1} | {:.1} |",
                mix_name(r.mix, args.spread),
                r.rate,
                confirmed as f64 / r.elapsed.as_secs_f64().max(1e-9),
                r.tally.shed,
                r.tally.shed as f64 * 100.0 / r.tally.sent.max(1) as f64,
                r.tally.errors - r.tally.shed,
                p.p50,
                p.p99_9,
                p.max
            );
        }
        let _ = writeln!(
            m,
            "\n(latency columns: 2xx answers, from when each order was due; a shed request is answered at once; confirmed/s over the time until the last answer; at half of the peak, the round with the median p99 of {} (lowest–highest p99))",
            args.rounds.max(1)
        );
    }
    m
}

/// The bound against end to end, per mix and client count.
fn main_table(m: &mut String, args: &BenchArgs, stack: &Stack, cells: &[Cell]) {
    let _ = writeln!(
        m,
        "| mix | N | database-only orders/s | p50 / p99 ms | end-to-end orders/s | p50 / p99 ms | not confirmed | ratio |\n|---|---|---|---|---|---|---|---|"
    );
    for c in cells {
        let (d, e) = (c.db.median().pct(), c.e2e.median().pct());
        let _ = writeln!(
            m,
            "| {}{} | {} | {} | {:.1} / {:.1} | {} | {:.1} / {:.1} | {} | **{:.0}%** |",
            mix_name(c.mix, args.spread),
            if c.via_gateway {
                ", through the gateway"
            } else {
                ""
            },
            c.concurrency,
            c.db.cell(),
            d.p50,
            d.p99,
            c.e2e.cell(),
            e.p50,
            e.p99,
            c.e2e.errors(),
            c.ratio() * 100.0
        );
    }
    let _ = writeln!(
        m,
        "\nOrders/s: the median of {} rounds (lowest–highest); latencies and CPU from the median round.{}",
        args.rounds.max(1),
        if stack.is_own() {
            " After every end-to-end and open-model measurement the benchmark checked (else it fails): every order settled, nothing left reserved, each product's stock moved by exactly its confirmed orders' quantities."
        } else {
            ""
        }
    );
}
