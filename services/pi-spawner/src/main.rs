//! The `pi-spawner` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// Runs on each Pi: registers it and spawns one pi-client per session
#[derive(Parser)]
#[command(name = "pi-spawner", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("pi-spawner", &cli.common, pi_spawner::run)
}
