//! `valerix load`: orders against the running stack at a fixed arrival rate
//! (open model) or from N clients (closed model), optionally with the
//! inventory latency gremlin on for a window in the middle; a live progress
//! display; then every affected order followed until it settles, the figures
//! printed, and a Markdown + JSON report written. Exit status 2 when an
//! acknowledged order was lost or an order did not settle in time.
//!
//! - [`drive`]: sending the orders (open and closed model); [`target`]: the HTTP calls
//! - [`scenario`]: the gremlin window; [`progress`]: the live display
//! - [`follow`]: what became of every order; [`tally`]: the figures; [`report`]: JSON and Markdown

pub mod drive;
pub mod follow;
pub mod progress;
pub mod report;
pub mod scenario;
pub mod tally;
pub mod target;

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};
use tokio::{sync::watch, time::Instant};
use valerix_runtime::topology::Service;

use self::{
    drive::{Arrival, Live, Plan, Until},
    progress::{Progress, ProgressMode},
    report::{Report, RunConfig},
    scenario::GremlinWindow,
    target::{InventoryControl, OrderTarget},
};

/// The gateway's base, where `/api/orders` reaches the order service.
pub fn gateway() -> String {
    format!("{}/api", Service::Gateway.default_address())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Orders only
    Steady,
    /// The inventory latency gremlin on for a window (see --gremlin-*)
    Gremlin,
}

#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Base URL whose `/orders` takes orders: the order service, or the gateway's `/api`
    #[arg(long, env = "VALERIX_TARGET", default_value_t = Service::Order.default_address().to_string())]
    pub target: String,

    /// Go through the API gateway (same as --target with the gateway's default address and /api)
    #[arg(long, conflicts_with = "target")]
    pub gateway: bool,

    /// The inventory service: the product list, restocking, the latency gremlin
    #[arg(long, env = "INVENTORY_URL", default_value_t = Service::Inventory.default_address().to_string())]
    pub inventory_url: String,

    /// Orders per second, sent on schedule whatever the answers (open model) [default: 50]
    #[arg(long, conflicts_with = "concurrency")]
    pub rate: Option<f64>,

    /// Clients, each sending its next order when the last is answered (closed model)
    #[arg(long)]
    pub concurrency: Option<usize>,

    /// How long to send orders: 30s, 2m, 500ms [default: 30s]
    #[arg(long, value_parser = parse_duration, conflicts_with = "orders")]
    pub duration: Option<Duration>,

    /// Send this many orders
    #[arg(long)]
    pub orders: Option<u64>,

    /// Every order for this one product
    #[arg(long, conflicts_with = "spread")]
    pub hot: Option<String>,

    /// Orders round-robin over the first N products of GET {inventory}/inventory [default: all]
    #[arg(long)]
    pub spread: Option<usize>,

    /// Units per order
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub quantity: i32,

    /// steady, or gremlin: inventory latency on for a window (--gremlin-at/--gremlin-for imply it)
    #[arg(long, value_enum, default_value_t = Scenario::Steady)]
    pub scenario: Scenario,

    /// When the inventory latency gremlin goes on [default: a third into the run]
    #[arg(long, value_parser = parse_duration)]
    pub gremlin_at: Option<Duration>,

    /// How long it stays on [default: a third of the run]
    #[arg(long, value_parser = parse_duration)]
    pub gremlin_for: Option<Duration>,

    /// The delay it adds to every inventory request
    #[arg(long, default_value_t = 3000)]
    pub gremlin_delay_ms: u64,

    /// How long to follow unsettled orders after the load before calling them stuck
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    pub settle_within: Duration,

    /// Timeout of one request
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    pub timeout: Duration,

    /// Most requests in flight; past it the open model waits (and the wait counts as latency)
    #[arg(long, default_value_t = 1024)]
    pub max_in_flight: usize,

    /// Leave stock alone (by default the products under load get enough for the run)
    #[arg(long)]
    pub no_restock: bool,

    /// Send no Idempotency-Key (errors then cannot be resolved afterwards)
    #[arg(long)]
    pub no_idempotency_keys: bool,

    /// Where the Markdown and JSON reports go
    #[arg(long, default_value = "load-report")]
    pub report_dir: PathBuf,

    /// Live display: auto (a bar on a terminal, lines otherwise), bar, lines, none
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
}

/// `30s`, `500ms`, `2m`, `1.5s`, or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {s:?} (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

impl LoadArgs {
    fn base(&self) -> String {
        if self.gateway {
            gateway()
        } else {
            self.target.trim_end_matches('/').to_owned()
        }
    }

    fn arrival(&self) -> anyhow::Result<Arrival> {
        Ok(match (self.rate, self.concurrency) {
            (Some(r), _) if !(r > 0.0 && r.is_finite()) => bail!("--rate must be above 0"),
            (Some(r), _) => Arrival::Rate(r),
            (None, Some(0)) => bail!("--concurrency must be at least 1"),
            (None, Some(n)) => Arrival::Clients(n),
            (None, None) => Arrival::Rate(50.0),
        })
    }

    fn until(&self) -> Until {
        match (self.duration, self.orders) {
            (Some(d), _) => Until::Elapsed(d),
            (None, Some(n)) => Until::Orders(n),
            (None, None) => Until::Elapsed(Duration::from_secs(30)),
        }
    }

    fn gremlin(&self, plan: &Plan) -> Option<GremlinWindow> {
        let on = self.scenario == Scenario::Gremlin
            || self.gremlin_at.is_some()
            || self.gremlin_for.is_some();
        if !on {
            return None;
        }
        let third = plan
            .expected_length()
            .unwrap_or(Duration::from_secs(30))
            .div_f64(3.0);
        Some(GremlinWindow {
            at: self.gremlin_at.unwrap_or(third),
            length: self.gremlin_for.unwrap_or(third),
            delay_ms: self.gremlin_delay_ms,
        })
    }
}

/// Units a product needs for the run, a little over what it may sell.
fn stock_needed(plan: &Plan) -> i64 {
    let orders = match (plan.until, plan.arrival) {
        (Until::Orders(n), _) => n as f64,
        (Until::Elapsed(d), Arrival::Rate(r)) => r * d.as_secs_f64(),
        // A closed model runs as fast as the stack: assume a fast one.
        (Until::Elapsed(d), Arrival::Clients(_)) => 5000.0 * d.as_secs_f64(),
    };
    let per_product = orders / plan.products.len().max(1) as f64;
    (per_product * 1.2 + 10.0) as i64 * i64::from(plan.quantity)
}

async fn choose_products(
    args: &LoadArgs,
    inventory: &InventoryControl,
) -> anyhow::Result<Vec<String>> {
    if let Some(hot) = &args.hot {
        return Ok(vec![hot.clone()]);
    }
    let mut ids: Vec<String> = inventory
        .products()
        .await
        .context("listing the products to spread orders over (--hot PRODUCT needs no list)")?
        .into_iter()
        .map(|p| p.product_id)
        .collect();
    ids.sort();
    if let Some(n) = args.spread {
        ids.truncate(n.max(1));
    }
    if ids.is_empty() {
        bail!(
            "the inventory at {} has no products (valerix seed creates the demo ones)",
            inventory.base()
        );
    }
    Ok(ids)
}

/// Raises each of the plan's products' stock to what the run may sell.
pub async fn restock(plan: &Plan, inventory: &InventoryControl) -> anyhow::Result<()> {
    let need = stock_needed(plan);
    let products = inventory
        .products()
        .await
        .context("reading stock to restock")?;
    for id in &plan.products {
        let Some(p) = products.iter().find(|p| &p.product_id == id) else {
            bail!("no product {id} at {}", inventory.base());
        };
        if let Some((from, to)) = inventory.restock(p, need).await? {
            println!("restocked {id}: stock {from} -> {to}");
        }
    }
    Ok(())
}

/// Runs `valerix load`; Ok(false) when orders were lost, stuck or changed.
pub async fn run(args: LoadArgs) -> anyhow::Result<bool> {
    let base = args.base();
    let target = OrderTarget::new(&base, args.timeout, args.max_in_flight)?;
    target
        .check()
        .await
        .with_context(|| format!("no order API at {base}/orders: is the stack up (valerix up)?"))?;
    let inventory = InventoryControl::new(&args.inventory_url)?;
    let mut plan = Plan {
        arrival: args.arrival()?,
        until: args.until(),
        products: Vec::new(),
        quantity: args.quantity,
        idempotency_keys: !args.no_idempotency_keys,
        max_in_flight: args.max_in_flight,
    };
    plan.products = choose_products(&args, &inventory).await?;
    if !args.no_restock {
        restock(&plan, &inventory).await?;
    }
    let gremlin = args.gremlin(&plan);
    if gremlin.is_some() {
        inventory.check_gremlins().await?;
    }
    let config = RunConfig {
        target: target.orders_url(),
        model: match plan.arrival {
            Arrival::Rate(_) => "open",
            Arrival::Clients(_) => "closed",
        },
        rate: match plan.arrival {
            Arrival::Rate(r) => Some(r),
            Arrival::Clients(_) => None,
        },
        concurrency: match plan.arrival {
            Arrival::Clients(n) => Some(n),
            Arrival::Rate(_) => None,
        },
        duration_s: match plan.until {
            Until::Elapsed(d) => Some(d.as_secs_f64()),
            Until::Orders(_) => None,
        },
        orders: match plan.until {
            Until::Orders(n) => Some(n),
            Until::Elapsed(_) => None,
        },
        products: plan.products.clone(),
        quantity: plan.quantity,
        gremlin,
        idempotency_keys: plan.idempotency_keys,
        settle_within_s: args.settle_within.as_secs_f64(),
    };

    // Ctrl-C once: stop sending, follow what was sent. Twice: stop following.
    let (stop_tx, stop_rx) = watch::channel(0u32);
    let interrupts = tokio::spawn(async move {
        while tokio::signal::ctrl_c().await.is_ok() {
            stop_tx.send_modify(|n| *n += 1);
        }
    });

    let started_at = chrono::Utc::now();
    let start = Instant::now();
    let live = Arc::new(Live::default());
    let progress = Progress::new(args.progress, &plan, start);
    progress.event(format!("load started: {}", config.describe()));
    let window = gremlin.map(|w| {
        tokio::spawn(scenario::run(
            inventory.clone(),
            w,
            start,
            stop_rx.clone(),
            progress.clone(),
        ))
    });
    let ticker = progress.spawn_ticker(live.clone(), plan.until);
    let quantity = plan.quantity;
    let tally = {
        let progress = progress.clone();
        drive::drive(
            target.clone(),
            plan,
            live,
            stop_rx.clone(),
            start,
            move |kind, at| {
                progress.event_at(at, format!("first order answered {kind}"));
            },
        )
        .await
    };
    ticker.abort();
    progress.finish_load();
    progress.event(format!(
        "load done: {} orders sent, {} affected",
        tally.sent,
        tally.affected.len()
    ));
    if let (Some(task), Some(w)) = (window, gremlin) {
        task.abort();
        // Whatever happened to the window, the gremlin does not outlive the run.
        let was_on = task.await.unwrap_or(true);
        if inventory.set_latency(w.delay_ms, false).await.is_ok() && was_on {
            progress.event("inventory latency gremlin OFF (end of run)");
        }
    }

    let mut tally = tally;
    let followed = follow::follow(
        &target,
        &mut tally,
        quantity,
        args.settle_within,
        &progress,
        stop_rx,
    )
    .await;
    interrupts.abort();
    let report = Report::new(started_at, config, tally, progress.events(), followed);
    println!("{}", report.markdown(Some(20)));
    let (md, json) = report.write(&args.report_dir)?;
    println!("Report: {} and {}", md.display(), json.display());
    Ok(report.verdict.ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn stock_for_a_run_covers_what_it_may_sell() {
        let plan = Plan {
            arrival: Arrival::Rate(50.0),
            until: Until::Elapsed(Duration::from_secs(30)),
            products: vec!["A".into(), "B".into()],
            quantity: 2,
            idempotency_keys: true,
            max_in_flight: 10,
        };
        // 1500 orders over two products, 2 units each.
        assert!(stock_needed(&plan) >= 750 * 2);
    }
}
