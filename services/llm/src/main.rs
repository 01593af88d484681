//! The `llm` command: the library's `run` under `plumbing::main`.

use clap::Parser;

/// The director: greets on join and answers every transcript with a clip
#[derive(Parser)]
#[command(name = "llm", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("llm", &cli.common, llm::run)
}
