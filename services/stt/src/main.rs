//! The `stt` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// Speech to text workers on the utterance work queue
#[derive(Parser)]
#[command(name = "stt", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("stt", &cli.common, stt::run)
}
