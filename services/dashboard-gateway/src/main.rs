//! The `dashboard-gateway` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// The operator's HTTP face: REST API, health
#[derive(Parser)]
#[command(name = "dashboard-gateway", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("dashboard-gateway", &cli.common, dashboard_gateway::run)
}
