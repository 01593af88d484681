//! The `room-manager` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// Session lifecycle: create, join, end
#[derive(Parser)]
#[command(name = "room-manager", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("room-manager", &cli.common, room_manager::run)
}
