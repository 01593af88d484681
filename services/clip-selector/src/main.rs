//! The `clip-selector` command: the service (the library's `run` under
//! `plumbing::main`), or `clip-selector mcp`, the library as MCP tools.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use plumbing::CommonArgs;

/// The film library: search over NATS (`cinema.clips.*`) and media over HTTP.
#[derive(Parser)]
#[command(name = "clip-selector", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the library to MCP clients (search_video_clips,
    /// play_video_by_params, list_films) on stdin/stdout, or over streamable
    /// HTTP with --http. Same configuration as the service; NATS is needed
    /// only to play.
    Mcp(McpArgs),
}

#[derive(Args)]
struct McpArgs {
    /// Serve streamable HTTP on this address (at /mcp) instead of stdio.
    #[arg(long, value_name = "ADDR")]
    http: Option<SocketAddr>,
    #[command(flatten)]
    common: CommonArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        None => plumbing::main("clip-selector", &cli.common, clip_selector::run),
        Some(Command::Mcp(mcp)) => {
            // The flags work before and after `mcp`; after wins.
            let common = CommonArgs {
                config: mcp.common.config.or(cli.common.config),
                nats_url: mcp.common.nats_url.or(cli.common.nats_url),
                set: cli.common.set.into_iter().chain(mcp.common.set).collect(),
            };
            serve_mcp(&common, mcp.http)
        }
    }
}

/// `clip-selector mcp`: like `plumbing::main`, but nothing waits for NATS
/// (it is reached on the first play), and stdout belongs to the protocol
/// (logs go to stderr).
fn serve_mcp(args: &CommonArgs, http: Option<SocketAddr>) -> ExitCode {
    let config: clip_selector::Config = match plumbing::config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("clip-selector: bad configuration: {e}");
            return ExitCode::from(plumbing::EXIT_BAD_CONFIG);
        }
    };
    plumbing::init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("clip-selector: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        let shutdown = plumbing::shutdown_on_signals();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            nats = %plumbing::redact(&config.nats_url),
            library = %config.catalog.library.display(),
            "clip-selector mcp is starting."
        );
        match clip_selector::mcp::run(config, http, shutdown).await {
            Ok(()) => {
                tracing::info!("clip-selector mcp stopped.");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "clip-selector mcp failed.");
                ExitCode::FAILURE
            }
        }
    });
    // A terminal's stdin is read on a blocking thread that cannot be
    // cancelled: do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}
