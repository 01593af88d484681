//! dashboard-gateway: the only HTTP face. The first generation's REST API
//! (`POST /api/connect`, `GET /conversation-status/{id}`, `GET /health`), the
//! typed-line path (`POST /api/sessions/{id}/say`) and session control, all
//! turned into requests and events on the bus; the operator's dashboard at
//! `/` (assets compiled in), live updates over server-sent events
//! (`/api/events`, `/api/audio`), the Pis, the library, the services'
//! health and `/metrics`; and a browser as a session's TV
//! (`/api/sessions/{id}/talk`, a WebSocket: see [`talk`]).
//!
//! Modules, each depending only on those above it:
//! - `error`, `metrics`, `relay`: the error answer, the counters, the bus →
//!   SSE fan-out (no HTTP state);
//! - `state`: what every handler shares;
//! - `auth`: the token check;
//! - one module per resource, each with its `router()`: `assets`,
//!   `sessions`, `talk`, `events`, `pis`, `library`, `health`;
//! - `router`: the whole API.

mod error;
mod metrics;
pub mod relay;
mod state;

mod auth;

mod assets;
pub mod events;
mod health;
mod library;
mod pis;
mod sessions;
pub mod talk;

mod router;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use auth::WRITES;
pub use router::app;
pub use state::AppState;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// Listen address (`HOST`). Without an API token the gateway listens on
    /// loopback only, whatever this says.
    pub host: IpAddr,
    /// Listen port (`PORT`).
    pub port: u16,
    /// Bearer token for everything but the dashboard's files, `/health`,
    /// `/api/info` and the API document (`CINEMA_API_TOKEN`).
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub api_token: String,
    /// A second token that opens the reads and the live streams only, for a
    /// wall display (`CINEMA_API_READ_TOKEN`); needs `api_token`.
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub api_read_token: String,
    /// The names (host or IP, no port) this gateway answers to besides
    /// loopback's. Without a token, or with names here, a request whose
    /// `Host` is another name is refused (421). `*` allows any.
    #[serde(deserialize_with = "plumbing::config::lenient_list")]
    pub allowed_hosts: Vec<String>,
    /// Origins allowed by CORS, and to send mutating requests and talk;
    /// empty allows none (same-origin only).
    #[serde(deserialize_with = "plumbing::config::lenient_list")]
    pub cors_origins: Vec<String>,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// A Pi whose heartbeat is older than this is shown stale (and offline
    /// after twice this); room-manager's `pi_stale_s` should match.
    pub pi_stale_s: u64,
    /// A browser's ears stay closed this long after a clip ends (as
    /// pi-client's `echo_tail_ms`).
    pub echo_tail_ms: u32,
    /// How the end of a browser visitor's turn is decided (as pi-client's:
    /// `turn_mode`, `turn_model` = `CINEMA_TURN_MODEL`, …).
    #[serde(flatten)]
    pub turn: voice::turn::TurnConfig,
    /// Live streams (`/api/events`, `/api/audio`) open at once; one more is
    /// a 503 with `Retry-After`.
    pub max_sse_clients: usize,
    /// Microphone sockets (`/api/sessions/{id}/talk`) open at once.
    pub max_talk_sockets: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 8765,
            api_token: String::new(),
            api_read_token: String::new(),
            allowed_hosts: Vec::new(),
            cors_origins: Vec::new(),
            body_limit: 64 * 1024,
            pi_stale_s: 30,
            echo_tail_ms: 500,
            turn: voice::turn::TurnConfig::default(),
            max_sse_clients: 1000,
            max_talk_sockets: 32,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_GATEWAY_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("HOST", "host"),
        ("PORT", "port"),
        ("CINEMA_API_TOKEN", "api_token"),
        ("CINEMA_API_READ_TOKEN", "api_read_token"),
        ("CINEMA_TURN_MODEL", "turn_model"),
        ("CINEMA_ONNXRUNTIME", "onnxruntime"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        self.turn.params()?;
        if self.max_sse_clients == 0 || self.max_talk_sockets == 0 {
            return Err("max_sse_clients and max_talk_sockets must be at least 1".into());
        }
        if !self.api_read_token.is_empty() && self.api_token.is_empty() {
            return Err(
                "CINEMA_API_READ_TOKEN needs CINEMA_API_TOKEN: without it nothing asks for a token"
                    .into(),
            );
        }
        if !self.api_read_token.is_empty() && self.api_read_token == self.api_token {
            return Err("CINEMA_API_READ_TOKEN must differ from CINEMA_API_TOKEN".into());
        }
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.contains('/') || h.contains(char::is_whitespace))
        {
            return Err(format!(
                "allowed_hosts: {bad:?} is not a host name (give names or addresses, no scheme or path)"
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub async fn run(config: Config, bus: bus::Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let host = if config.api_token.is_empty() && !config.host.is_loopback() {
        tracing::warn!(
            requested = %config.host,
            "No CINEMA_API_TOKEN is set, so the gateway listens on loopback only."
        );
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.host
    };
    let addr = SocketAddr::new(host, config.port);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| Error::Listen { addr, source })?;
    let service = bus::service::start(
        bus.client(),
        bus::names::service::DASHBOARD_GATEWAY,
        "HTTP API and dashboard",
    )
    .await?;
    let state = AppState::new(bus, &config);
    let relay = state.start_relay(shutdown.clone()).await?;
    tracing::info!(url = %format!("http://{local}/"), auth = !config.api_token.is_empty(), "The gateway is listening.");
    // `into_make_service`: each connection gets a cheap handle to the one
    // router. Handing `serve` the router itself re-clones every route per
    // connection (about 100 KiB each here), which 500 SSE clients feel.
    axum::serve(listener, app(state).into_make_service())
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Listen { addr, source })?;
    relay.abort();
    let _ = service.stop().await;
    Ok(())
}
