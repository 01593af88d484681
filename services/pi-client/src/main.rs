//! The `pi-client` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// Per-session client on a Pi: joins, plays clips through one long-lived mpv
#[derive(Parser)]
#[command(name = "pi-client", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("pi-client", &cli.common, pi_client::run)
}
