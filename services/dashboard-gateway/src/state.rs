//! What every handler shares: the bus, the configuration, the SSE relay's
//! hub, the metrics, the Pis seen and the browser sockets talking for
//! sessions. Depends on `error`, `relay` and `metrics` only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bus::endpoints;
use bus::subjects;
use bus::{Bus, names};
use tokio_util::sync::CancellationToken;
use wire::v1::{Session, SessionRef, SessionReply};

use crate::Config;
use axum::http::StatusCode;

use crate::error::AppError;
use crate::metrics::Metrics;
use crate::relay::{self, Hub};

#[derive(Clone)]
pub struct AppState {
    pub(crate) bus: Bus,
    pub(crate) token: Option<Arc<str>>,
    /// Opens the reads and the live streams only.
    pub(crate) read_token: Option<Arc<str>>,
    pub(crate) config: Arc<Config>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    pis: Arc<tokio::sync::OnceCell<bus::async_nats::jetstream::kv::Store>>,
    /// Every Pi this gateway has seen, by id: shown offline once its
    /// presence entry expires.
    pub(crate) pis_seen: Arc<Mutex<HashMap<String, wire::v1::PiPresence>>>,
    /// The browser socket talking for each session on this gateway; a newer
    /// page takes a session over from an older one.
    talks: Arc<Mutex<HashMap<String, Registration>>>,
    /// Places for live streams (SSE clients) and microphone sockets: each
    /// holds memory and a subscription while open, so there are only so
    /// many (`max_sse_clients`, `max_talk_sockets`).
    sse_slots: Arc<tokio::sync::Semaphore>,
    talk_slots: Arc<tokio::sync::Semaphore>,
}

impl AppState {
    pub fn new(bus: Bus, config: &Config) -> AppState {
        AppState {
            bus,
            token: (!config.api_token.is_empty()).then(|| Arc::from(config.api_token.as_str())),
            read_token: (!config.api_token.is_empty() && !config.api_read_token.is_empty())
                .then(|| Arc::from(config.api_read_token.as_str())),
            config: Arc::new(config.clone()),
            hub: Arc::new(Hub::new()),
            metrics: Arc::new(Metrics::new()),
            pis: Arc::default(),
            pis_seen: Arc::default(),
            talks: Arc::default(),
            sse_slots: Arc::new(tokio::sync::Semaphore::new(config.max_sse_clients)),
            talk_slots: Arc::new(tokio::sync::Semaphore::new(config.max_talk_sockets)),
        }
    }

    /// A place for one more SSE client, or a 503 saying the limit.
    pub(crate) fn sse_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
        self.sse_slots.clone().try_acquire_owned().map_err(|_| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} live streams are open, as many as this gateway keeps (CINEMA_GATEWAY_MAX_SSE_CLIENTS); close one and try again",
                    self.config.max_sse_clients
                ),
            )
            .retry_after(5)
        })
    }

    /// A place for one more microphone socket, or a 503 saying the limit.
    pub(crate) fn talk_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, AppError> {
        self.talk_slots.clone().try_acquire_owned().map_err(|_| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "{} pages are talking, as many as this gateway keeps (CINEMA_GATEWAY_MAX_TALK_SOCKETS); try again later",
                    self.config.max_talk_sockets
                ),
            )
            .retry_after(5)
        })
    }

    /// Registers the socket that now talks for `sid`; the one before it (if
    /// any) is told to leave.
    pub(crate) fn take_over_talk(&self, sid: &str) -> Registration {
        let mine = Registration::new();
        let mut talks = self.talks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = talks.insert(sid.to_string(), mine.clone()) {
            before.stop.cancel();
        }
        mine
    }

    /// Forgets the socket of `sid`, unless another took over since.
    pub(crate) fn release_talk(&self, sid: &str, mine: &Registration) {
        let mut talks = self.talks.lock().unwrap_or_else(|p| p.into_inner());
        if talks.get(sid).is_some_and(|t| t.id == mine.id) {
            talks.remove(sid);
        }
    }

    /// Starts relaying session events to SSE clients (one subscription for
    /// every client) until `shutdown`. Without it, `/api/events` streams
    /// only the stored records.
    pub async fn start_relay(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, bus::Error> {
        relay::start_relay(
            self.hub.clone(),
            self.metrics.clone(),
            self.bus.clone(),
            shutdown,
        )
        .await
    }

    /// The presence bucket, opened once.
    pub(crate) async fn pis_bucket(
        &self,
    ) -> Result<bus::async_nats::jetstream::kv::Store, bus::Error> {
        self.pis
            .get_or_try_init(|| self.bus.kv(names::PIS_BUCKET))
            .await
            .cloned()
    }

    /// The session `id` as room-manager has it (an id that cannot be one
    /// is a 400).
    pub(crate) async fn session(&self, id: &str) -> Result<Session, AppError> {
        subjects::check_id("session id", id)?;
        let reply: SessionReply = self
            .bus
            .request(
                &endpoints::rooms::GET,
                &SessionRef {
                    session_id: id.into(),
                    reason: String::new(),
                },
            )
            .await?;
        Ok(reply.session.unwrap_or_default())
    }
}

/// One socket's claim on a session (see [`AppState::take_over_talk`]).
#[derive(Clone)]
pub struct Registration {
    pub(crate) id: u64,
    /// Cancelled when a newer page takes the session over.
    pub(crate) stop: CancellationToken,
}

impl Registration {
    pub(crate) fn new() -> Registration {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Registration {
            id: NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            stop: CancellationToken::new(),
        }
    }
}
