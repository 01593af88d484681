//! What every service binary shares: layered configuration (defaults → TOML
//! file → environment → flags), tracing, signal → cancellation, and one
//! `main` that connects to NATS, runs the service and drains on shutdown.

pub mod config;
pub mod in_process;

use std::future::Future;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use config::{CommonArgs, Settings};

/// Exit code for bad configuration (EX_CONFIG would be 78; the project uses
/// EX_USAGE, 64, as linkerd does).
pub const EXIT_BAD_CONFIG: u8 = 64;

/// How long a service may take to finish in-flight work after a signal.
pub const DRAIN_GRACE: Duration = Duration::from_secs(3);

/// The whole of a service's stop after a signal: its own wind-down, then
/// the drain of what it sent, within what docker (10 s) and systemd give
/// before they kill. Whatever is not done by then (NATS gone, a request
/// that never answers) is left: the process exits.
pub const STOP_GRACE: Duration = Duration::from_secs(6);

/// Installs the tracing subscriber: `RUST_LOG`-style filter (default `info`),
/// human output on a terminal, JSON lines otherwise (journald, containers).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,async_nats=warn,tantivy=warn,whisper_rs=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if std::io::stderr().is_terminal() {
        builder.try_init()
    } else {
        builder.json().flatten_event(true).try_init()
    };
}

/// A token cancelled by the first SIGINT or SIGTERM; a second signal exits
/// the process at once.
pub fn shutdown_on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut signals = 0;
        loop {
            wait_for_signal().await;
            signals += 1;
            if signals == 1 {
                tracing::info!("Shutting down; a second signal exits at once.");
                cancel.cancel();
            } else {
                std::process::exit(130);
            }
        }
    });
    token
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The common `main` of a service: load and validate the configuration (one
/// line and exit 64 when bad), set up tracing, print one start-up line,
/// connect to NATS with a named connection, create the topology, run the
/// service until a signal, and drain.
pub fn main<C, F, Fut, E>(service: &'static str, args: &CommonArgs, run: F) -> ExitCode
where
    C: Settings,
    F: FnOnce(C, bus::Bus, CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let config: C = match config::load(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{service}: bad configuration: {e}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    init_tracing();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{service}: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = shutdown_on_signals();
        let nats_url = config.nats_url().to_string();
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            nats = %redact(&nats_url),
            "{service} is starting."
        );
        let bus = tokio::select! {
            bus = connect(&nats_url, service, C::MAKES_TOPOLOGY) => bus,
            _ = shutdown.cancelled() => return ExitCode::SUCCESS,
        };
        let bus = match bus {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "Cannot reach NATS.");
                return ExitCode::FAILURE;
            }
        };
        let client = bus.client().clone();
        let stopping = shutdown.clone();
        let running = run(config, bus, shutdown);
        tokio::pin!(running);
        let result = tokio::select! {
            r = &mut running => r,
            () = async {
                stopping.cancelled().await;
                tokio::time::sleep(STOP_GRACE).await;
            } => {
                tracing::warn!("{service} did not finish stopping within {STOP_GRACE:?}; exiting anyway.");
                return ExitCode::SUCCESS;
            }
        };
        // A drain needs the server: with the connection down there is
        // nothing to flush to, and waiting would only delay the exit.
        if client.connection_state() == bus::async_nats::connection::State::Connected {
            let _ = tokio::time::timeout(DRAIN_GRACE, client.drain()).await;
        }
        match result {
            Ok(()) => {
                tracing::info!("{service} stopped.");
                ExitCode::SUCCESS
            }
            Err(e) => {
                tracing::error!(error = %e, "{service} failed.");
                ExitCode::FAILURE
            }
        }
    })
}

/// Connects to the bus and, for a server-side service, makes sure streams
/// and buckets exist.
pub async fn connect(nats_url: &str, name: &str, topology: bool) -> Result<bus::Bus, bus::Error> {
    let bus = bus::Bus::connect(nats_url, name).await?;
    if topology {
        bus.ensure_topology().await?;
    }
    Ok(bus)
}

/// A NATS URL fit for a log line: a password in it is masked.
pub fn redact(url: &str) -> String {
    url.split(',')
        .map(|server| match (server.find("://"), server.rfind('@')) {
            (Some(scheme), Some(at)) if at > scheme => {
                let userinfo = &server[scheme + 3..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{}{user}:***{}", &server[..scheme + 3], &server[at..])
            }
            _ => server.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_the_log() {
        assert_eq!(redact("nats://127.0.0.1:4222"), "nats://127.0.0.1:4222");
        assert_eq!(
            redact("nats://pi-1:s3cret@hub:4222"),
            "nats://pi-1:***@hub:4222"
        );
        assert_eq!(
            redact("tls://a:b@h1:4222,nats://h2:4222"),
            "tls://a:***@h1:4222,nats://h2:4222"
        );
        assert!(!redact("nats://u:p@ss@h:1").contains("p@ss"));
    }
}
