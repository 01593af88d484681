use clap::Parser;

/// The film library: search over NATS (`cinema.clips.*`) and media over HTTP.
#[derive(Parser)]
#[command(name = "clip-selector", version, about)]
struct Cli {
    #[command(flatten)]
    common: plumbing::CommonArgs,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    plumbing::main("clip-selector", &cli.common, clip_selector::run)
}
