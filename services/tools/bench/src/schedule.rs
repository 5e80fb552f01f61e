//! The order of a run's measurements: every mix and concurrency (the bound
//! and end to end alternating), the API gateway's cost, then the open
//! model at half of the peak and past it.

use std::time::Duration;

use valerix_load::{tally::Percentiles, target::OrderTarget};

use crate::{
    BenchArgs, Mix, dbonly, gateway,
    measure::{Cell, OpenRun, Runs, e2e, open_run, products},
    reference::Reference,
    report::{load_average, markdown, mix_name},
    stack::Stack,
};

pub(crate) async fn measure_all(args: &BenchArgs, stack: &mut Stack) -> anyhow::Result<String> {
    let mixes: Vec<(Mix, Vec<String>)> = args
        .mix
        .iter()
        .map(|&m| (m, products(m, args.spread)))
        .collect();
    for (_, p) in &mixes {
        stack.seed(p).await?;
    }
    let started = chrono::Utc::now();
    let load_at_start = load_average();
    let pg = stack.postgres_version().await;
    // Plenty of idle connections, so the client never pays for new ones.
    let target = OrderTarget::new(&stack.target, Duration::from_secs(30), 20_000)?;
    let gateway = match &stack.gateway {
        Some(url) => Some(OrderTarget::new(url, Duration::from_secs(30), 20_000)?),
        None => None,
    };

    let mut cells = Vec::new();
    if !args.gateway_only {
        cells = closed(args, stack, &target, &mixes).await?;
        if let Some(via) = &gateway {
            cells.extend(through_gateway_at_top(args, stack, via, &mixes, &cells).await?);
        }
    }
    let costs = match &gateway {
        Some(via) => {
            let reference = match (args.gateway_reference, stack.is_own()) {
                (false, _) => None,
                (true, false) => {
                    anyhow::bail!("--gateway-reference needs the bench's own stack, not --target")
                }
                (true, true) => {
                    let haproxy = valerix_devdb::find_program("haproxy").ok_or_else(|| {
                        anyhow::anyhow!(
                            "--gateway-reference needs haproxy (not on PATH nor in /usr/sbin)"
                        )
                    })?;
                    Some(Reference::start(&haproxy, &stack.order_address(), stack.dir()).await?)
                }
            };
            let reference = match &reference {
                Some(r) => Some((
                    OrderTarget::new(&r.base, Duration::from_secs(30), 20_000)?,
                    r.pid(),
                )),
                None => None,
            };
            gateway::measure(args, stack, &target, via, reference.as_ref(), &mixes).await?
        }
        None => Vec::new(),
    };
    let open = if args.gateway_only {
        Vec::new()
    } else {
        open_model(args, stack, &target, gateway.as_ref(), &mixes, &cells).await?
    };

    let load = (load_at_start, load_average());
    Ok(markdown(
        args,
        stack,
        &pg,
        (started, load),
        &cells,
        &costs,
        &open,
    ))
}

/// Every mix at every --concurrency: the bound and end to end, alternating.
async fn closed(
    args: &BenchArgs,
    stack: &Stack,
    target: &OrderTarget,
    mixes: &[(Mix, Vec<String>)],
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    for (mix, products) in mixes {
        for &c in &args.concurrency {
            let (mut db, mut e2e_runs) = (Vec::new(), Vec::new());
            // Alternating, so a slow spell of the machine hits both sides.
            for _ in 0..args.rounds.max(1) {
                stack.reset().await?;
                db.push(
                    dbonly::measure(&stack.database_url, products, c, args, &stack.roles()).await?,
                );
                stack.reset().await?;
                e2e_runs.push(e2e(target, products, c, args, &stack.roles()).await);
                stack.check_settled().await?;
            }
            let cell = Cell {
                mix: *mix,
                via_gateway: false,
                concurrency: c,
                db: Runs::new(db),
                e2e: Runs::new(e2e_runs),
            };
            let (d, e) = (cell.db.median(), cell.e2e.median());
            eprintln!(
                "{:<20} x{c:<3} database-only {:>18}/s (p99 {:>6.1} ms)   end-to-end {:>18}/s (p99 {:>6.1} ms, {} not confirmed)   {:>4.0}%",
                mix_name(*mix, args.spread),
                cell.db.cell(),
                d.pct().p99,
                cell.e2e.cell(),
                e.pct().p99,
                cell.e2e.errors(),
                cell.ratio() * 100.0
            );
            cells.push(cell);
        }
    }
    Ok(cells)
}

/// Each mix through the gateway at the highest --concurrency, against the
/// bound of the same run.
async fn through_gateway_at_top(
    args: &BenchArgs,
    stack: &Stack,
    via: &OrderTarget,
    mixes: &[(Mix, Vec<String>)],
    direct_cells: &[Cell],
) -> anyhow::Result<Vec<Cell>> {
    let mut cells = Vec::new();
    let top = args.concurrency.iter().copied().max().unwrap_or(1);
    for (mix, products) in mixes {
        let Some(direct) = direct_cells
            .iter()
            .find(|c| c.mix == *mix && c.concurrency == top)
        else {
            continue;
        };
        let mut runs = Vec::new();
        for _ in 0..args.rounds.max(1) {
            stack.reset().await?;
            runs.push(e2e(via, products, top, args, &stack.roles()).await);
            stack.check_settled().await?;
        }
        let cell = Cell {
            mix: *mix,
            via_gateway: true,
            concurrency: top,
            // The bound does not depend on the route: the same run's.
            db: direct.db.clone(),
            e2e: Runs::new(runs),
        };
        eprintln!(
            "{:<20} x{top:<3} through the gateway {:>18}/s (p99 {:>6.1} ms)   {:>4.0}%",
            mix_name(*mix, args.spread),
            cell.e2e.cell(),
            cell.e2e.median().pct().p99,
            cell.ratio() * 100.0
        );
        cells.push(cell);
    }
    Ok(cells)
}

/// Per mix, the open model at half of the peak (direct and through the
/// gateway, alternating) and past it.
async fn open_model(
    args: &BenchArgs,
    stack: &mut Stack,
    target: &OrderTarget,
    gateway: Option<&OrderTarget>,
    mixes: &[(Mix, Vec<String>)],
    cells: &[Cell],
) -> anyhow::Result<Vec<OpenRun>> {
    let mut open = Vec::new();
    for (mix, products) in mixes {
        let peak = cells
            .iter()
            .filter(|c| c.mix == *mix && !c.via_gateway)
            .map(|c| c.e2e.median().per_s())
            .fold(0.0, f64::max);
        if peak <= 0.0 {
            continue;
        }
        // Rounds like the closed model's (a spell of the machine moves a
        // tail the most), direct and through the gateway alternating.
        let (mut direct, mut via_gateway) = (Vec::new(), Vec::new());
        for _ in 0..args.rounds.max(1) {
            stack.reset().await?;
            let half = open_run(target, args, *mix, products, peak / 2.0, peak, true).await;
            stack.check_settled().await?;
            direct.push(half);
            if let Some(via) = gateway {
                stack.reset().await?;
                let mut half = open_run(via, args, *mix, products, peak / 2.0, peak, true).await;
                half.via_gateway = true;
                stack.check_settled().await?;
                via_gateway.push(half);
            }
        }
        for half in [direct, via_gateway]
            .into_iter()
            .filter_map(OpenRun::median_of)
        {
            eprintln!(
                "{:<20} half of peak{}: {:.0}/s, p99 {:.1} ms",
                mix_name(*mix, args.spread),
                if half.via_gateway {
                    " through the gateway"
                } else {
                    ""
                },
                half.rate,
                half.p99()
            );
            open.push(half);
        }
        if args.overload > 0.0 {
            stack.reset().await?;
            let over = open_run(
                target,
                args,
                *mix,
                products,
                peak * args.overload,
                peak,
                true,
            )
            .await;
            stack.check_settled().await?;
            eprintln!(
                "{:<20} {}x peak: {} of {} shed",
                mix_name(*mix, args.spread),
                args.overload,
                over.tally.shed,
                over.tally.sent
            );
            open.push(over);
        }
    }
    if args.compare_unshed && args.overload > 0.0 && stack.is_own() {
        let mut env = args.service_env.clone();
        env.push(("VALERIX_MAX_IN_FLIGHT".into(), "0".into()));
        stack.restart_services(env).await?;
        // The services came back on new ports.
        let target = OrderTarget::new(&stack.target, Duration::from_secs(30), 20_000)?;
        for (mix, products) in mixes {
            let Some(peak) = open.iter().find(|r| r.mix == *mix).map(|r| r.peak) else {
                continue;
            };
            stack.reset().await?;
            let over = open_run(
                &target,
                args,
                *mix,
                products,
                peak * args.overload,
                peak,
                false,
            )
            .await;
            stack.check_settled().await?;
            eprintln!(
                "{:<20} {}x peak without shedding: p99 {:.0} ms",
                mix_name(*mix, args.spread),
                args.overload,
                Percentiles::of(&over.tally.all).p99
            );
            open.push(over);
        }
    }
    Ok(open)
}
