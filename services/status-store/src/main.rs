//! The `status-store` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// The conversation record of every session, in JetStream KV
#[derive(Parser)]
#[command(name = "status-store", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("status-store", &cli.common, status_store::run)
}
