use clap::Parser;
use order_service::{Config, NAME, run};
use valerix_runtime::server::{self, shutdown};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    server::main(NAME, config.listen, |l| run(config, l, shutdown::signal())).await
}
