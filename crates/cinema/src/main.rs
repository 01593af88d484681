//! The `cinema` command: the operator's tool (`up`, `library`, `tap`,
//! `nats-accounts`, `ready`, …), one module a subcommand.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Cinema Chat: an old TV that converses only in movie clips.
#[derive(Parser)]
#[command(name = "cinema", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the whole stack on this machine: a private nats-server, every
    /// service, one simulated Pi, the demo library, the gateway on PORT.
    Up(cinema::up::UpArgs),
    /// Print bus traffic as JSON lines, decoded from protobuf.
    Tap(cinema::tap::TapArgs),
    /// Print the `accounts` block of the hub's NATS configuration: a user
    /// per role and per Pi, with subject permissions
    /// (`cinema nats-accounts --pi hall-1 --pi hall-2 > nats/accounts.conf`).
    NatsAccounts(cinema::accounts::AccountsArgs),
    /// Exit 0 when SERVICE answers on the bus (NATS services API ping);
    /// the containers' healthchecks.
    Ready(cinema::ready::ReadyArgs),
    /// Work with film libraries.
    Library {
        #[command(subcommand)]
        command: LibraryCommand,
    },
}

#[derive(Subcommand)]
enum LibraryCommand {
    /// Ingest a folder of films: subtitles (sidecar or embedded), dialogue
    /// and scene clips, thumbnails; re-runs redo only what changed.
    Add(cinema::library::AddArgs),
    /// Generate the demo library (short films with speech, drawn lines, .srt).
    Demo {
        /// Folder to write the films into.
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up(args) => {
            plumbing::init_tracing();
            block_on("cinema up", cinema::up::run(args))
        }
        Command::Tap(args) => block_on("cinema tap", cinema::tap::run(args)),
        Command::Ready(args) => block_on("cinema ready", cinema::ready::run(args)),
        Command::NatsAccounts(args) => match cinema::accounts::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("cinema nats-accounts: {e:#}");
                ExitCode::from(64)
            }
        },
        Command::Library {
            command: LibraryCommand::Add(args),
        } => {
            plumbing::init_tracing();
            match cinema::library::add(args) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cinema library add: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Library {
            command: LibraryCommand::Demo { dir },
        } => match synth::demo_library(&dir) {
            Ok(films) => {
                println!("Wrote {} demo films to {}.", films.len(), dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cinema library demo: {e}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Runs a subcommand on a fresh runtime; its error is one line and exit 1.
fn block_on(what: &str, work: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cinema: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{what}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
