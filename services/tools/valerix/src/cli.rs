//! The `valerix` command line: its verbs and what each runs. The `valerix`
//! binary is [`main`] and nothing else, and so is the copy the integration
//! tests build of it (`services/tests`), so both run this code.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use valerix_bench as bench;
use valerix_load as load;
use valerix_runtime::topology::Service;

use crate::{audit, backup, chaos, drill, openapi, seed, up};

/// Valerix: a fault-tolerant e-commerce backend. The operator's verbs.
#[derive(Parser)]
#[command(name = "valerix", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

// Parsed once per process; its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Cmd {
    /// Run the whole stack on localhost (throwaway PostgreSQL, services, demo data)
    Up(up::UpArgs),
    /// Take a pgBackRest backup of a `valerix up --backup-dir` stack now
    Backup(backup::BackupArgs),
    /// Restore a stopped cluster from its pgBackRest repository, to the
    /// latest archived WAL or a point in time
    Restore(backup::RestoreArgs),
    /// Copy the local backup repository off-site; at most once a UTC day
    /// (exit 3 when today's upload already ran)
    UploadOffsite(backup::offsite::UploadArgs),
    /// Check the order-flow invariants against a database; exit 1 on any violation
    Audit {
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: String,
        /// Also count orders unsettled for longer than this many seconds as violations
        #[arg(long)]
        max_pending_secs: Option<u64>,
    },
    /// Create the demo products that do not exist yet
    Seed {
        #[arg(long, env = "INVENTORY_URL", default_value_t = Service::Inventory.default_address().to_string())]
        inventory_url: String,
        /// The services' token, when the inventory service requires it
        #[arg(long, env = "VALERIX_SERVICE_TOKEN_FILE")]
        service_token_file: Option<std::path::PathBuf>,
    },
    /// Drive orders at the running stack and report what happened to each;
    /// exit 2 when an order was lost or did not settle
    Load(load::LoadArgs),
    /// The database-only bound against end to end, the ratio table (use a release build)
    Bench(bench::BenchArgs),
    /// Drive the stack for a long while with nothing scraping it and watch
    /// each process's memory; exit 2 when one grew past the limit after warm-up
    Soak(bench::soak::SoakArgs),
    /// Run the fault schedule with the cure (retries, breaker, reconciler) off and on; print the table
    Chaos {
        #[arg(long, default_value_t = 1000)]
        orders: usize,
        /// Orders per second
        #[arg(long, default_value_t = 100.0)]
        rate: f64,
        /// Which runs: off, on, or both
        #[arg(long, default_value = "both", value_parser = ["off", "on", "both"])]
        cure: String,
    },
    /// Rehearse a failure with the whole stack under load and report what
    /// the clients saw; exit 2 when an acknowledged order was lost
    #[command(subcommand)]
    Drill(drill::Drill),
    /// Write the OpenAPI spec of every service into a directory
    Openapi {
        #[arg(long, default_value = "openapi")]
        out: PathBuf,
    },
    /// Run one service in this process (what `up` starts); `--help` on each
    #[command(subcommand)]
    Service(ServiceCmd),
}

#[derive(Subcommand)]
enum ServiceCmd {
    /// The order service
    Order(order_service::Config),
    /// The inventory service
    Inventory(inventory_service::Config),
    /// The payment service
    Payment(payment_service::Config),
    /// The API gateway: the dashboard and the services' APIs under /api
    Gateway(api_gateway::Config),
}

async fn service(s: ServiceCmd) -> ExitCode {
    use valerix_runtime::server::{main, shutdown::signal};
    match s {
        ServiceCmd::Order(c) => {
            main(order_service::NAME, c.listen, |l| {
                order_service::run(c, l, signal())
            })
            .await
        }
        ServiceCmd::Inventory(c) => {
            main(inventory_service::NAME, c.listen, |l| {
                inventory_service::run(c, l, signal())
            })
            .await
        }
        ServiceCmd::Payment(c) => {
            main(payment_service::NAME, c.listen, |l| {
                payment_service::run(c, l, signal())
            })
            .await
        }
        ServiceCmd::Gateway(c) => {
            main(api_gateway::NAME, c.listen, |l| {
                api_gateway::run(c, l, signal())
            })
            .await
        }
    }
}

/// Parses the command line and runs the verb it names.
#[tokio::main]
pub async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Service(s) => return service(s).await,
        Cmd::Load(args) => {
            return match load::run(args).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(err) => {
                    eprintln!("valerix: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Bench(args) => bench::run(args).await,
        Cmd::Drill(d) => {
            return match drill::run(&d).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(err) => {
                    eprintln!("valerix: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Soak(args) => {
            return match bench::soak::run(args).await {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(2),
                Err(err) => {
                    eprintln!("valerix: {err:#}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Up(args) => {
            valerix_runtime::telemetry::init("valerix");
            up::run(args).await
        }
        Cmd::Backup(args) => backup::backup(&args).map_err(Into::into),
        Cmd::Restore(args) => backup::restore(&args).map_err(Into::into),
        Cmd::UploadOffsite(args) => {
            return match backup::offsite::run(&args) {
                Ok(_) => ExitCode::SUCCESS,
                Err(err @ backup::offsite::UploadError::AlreadyToday { .. }) => {
                    eprintln!("valerix: {err}");
                    ExitCode::from(3)
                }
                Err(err) => {
                    eprintln!("valerix: {err}");
                    ExitCode::FAILURE
                }
            };
        }
        Cmd::Audit {
            database_url,
            max_pending_secs,
        } => {
            async {
                let pool = sqlx::PgPool::connect(&database_url).await?;
                let report = audit::audit(&pool, max_pending_secs.map(Duration::from_secs)).await?;
                audit::print(&report);
                if report.is_clean() {
                    Ok(())
                } else {
                    anyhow::bail!("{} invariant violation(s)", report.violations.len())
                }
            }
            .await
        }
        Cmd::Seed {
            inventory_url,
            service_token_file,
        } => async {
            let token = valerix_runtime::auth::Token::read(service_token_file.as_deref())?;
            seed::seed_with(&inventory_url, token.as_ref()).await
        }
        .await
        .map(|created| {
            println!(
                "created: {}",
                if created.is_empty() {
                    "nothing (all exist)".to_owned()
                } else {
                    created.join(", ")
                }
            );
        }),
        Cmd::Chaos { orders, rate, cure } => {
            async {
                let cures: &[bool] = match cure.as_str() {
                    "off" => &[false],
                    "on" => &[true],
                    _ => &[false, true],
                };
                let reports = chaos::demo(orders, rate, cures).await?;
                println!("{}", chaos::ChaosReport::table(&reports));
                for r in &reports {
                    for v in r.violations.iter().take(5) {
                        println!(
                            "cure {}: [{}] {}",
                            if r.cure { "on" } else { "off" },
                            v.invariant,
                            v.detail
                        );
                    }
                }
                Ok(())
            }
            .await
        }
        Cmd::Openapi { out } => openapi::write_all(&out).map_err(Into::into),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("valerix: {err:#}");
            ExitCode::FAILURE
        }
    }
}
