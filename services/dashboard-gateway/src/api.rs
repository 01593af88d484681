//! The HTTP API as a router, so tests can call it without sockets.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, names};
use serde::Deserialize;
use serde_json::{Value, json};
use wire::v1::{
    CleanupReply, CleanupRequest, ConversationEvent, CreateSessionRequest, FilmList,
    ListFilmsRequest, ListSessionsRequest, Session, SessionList, SessionRef, SessionReply,
    SessionState, SpawnReply, SpawnRequest, StatusMessage, StatusRecord, StatusRequest,
    StatusUpdate, Transcript, TranscriptSource, conversation_event,
};

use crate::events::Hub;
use crate::metrics::Metrics;
use crate::{Config, assets, events, library, metrics, pis, talk};

/// Longest typed line accepted.
pub const MAX_LINE_CHARS: usize = 1000;

#[derive(Clone)]
pub struct AppState {
    pub(crate) bus: Bus,
    token: Option<Arc<str>>,
    pub(crate) config: Arc<Config>,
    pub(crate) hub: Arc<Hub>,
    pub(crate) metrics: Arc<Metrics>,
    pis: Arc<tokio::sync::OnceCell<bus::async_nats::jetstream::kv::Store>>,
    /// Every Pi this gateway has seen, by id: shown offline once its
    /// presence entry expires.
    pub(crate) pis_seen: Arc<Mutex<HashMap<String, wire::v1::PiPresence>>>,
    /// The browser socket talking for each session on this gateway; a newer
    /// page takes a session over from an older one.
    talks: Arc<Mutex<HashMap<String, talk::Registration>>>,
}

impl AppState {
    pub fn new(bus: Bus, config: &Config) -> AppState {
        AppState {
            bus,
            token: (!config.api_token.is_empty()).then(|| Arc::from(config.api_token.as_str())),
            config: Arc::new(config.clone()),
            hub: Arc::new(Hub::new()),
            metrics: Arc::new(Metrics::new()),
            pis: Arc::default(),
            pis_seen: Arc::default(),
            talks: Arc::default(),
        }
    }

    /// Registers the socket that now talks for `sid`; the one before it (if
    /// any) is told to leave.
    pub(crate) fn take_over_talk(&self, sid: &str) -> talk::Registration {
        let mine = talk::Registration::new();
        let mut talks = self.talks.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(before) = talks.insert(sid.to_string(), mine.clone()) {
            before.stop.cancel();
        }
        mine
    }

    /// Forgets the socket of `sid`, unless another took over since.
    pub(crate) fn release_talk(&self, sid: &str, mine: &talk::Registration) {
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
        events::start_relay(
            self.hub.clone(),
            self.metrics.clone(),
            self.bus.client().clone(),
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
}

/// An error answer: `{"error": message}` with a status. 5xx details are
/// logged, and the client gets the message only.
#[derive(Debug)]
pub struct AppError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
}

impl AppError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "A request failed.");
        }
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<bus::Error> for AppError {
    fn from(e: bus::Error) -> Self {
        let status = match &e {
            bus::Error::Remote { code, .. } => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            bus::Error::InvalidId { .. } => StatusCode::BAD_REQUEST,
            bus::Error::NoResponders { .. } | bus::Error::Timeout { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            _ => StatusCode::BAD_GATEWAY,
        };
        let message = match e {
            bus::Error::Remote { message, .. } => message,
            other => other.to_string(),
        };
        AppError::new(status, message)
    }
}

impl From<axum::extract::rejection::JsonRejection> for AppError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        AppError::new(r.status(), r.body_text())
    }
}

/// JSON body whose rejections answer in the API's error shape.
#[derive(FromRequest)]
#[from_request(via(axum::Json), rejection(AppError))]
pub struct ApiJson<T>(pub T);

pub fn app(state: AppState) -> Router {
    let cors = {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
    };
    Router::new()
        .route("/", get(assets::index))
        .route("/app.js", get(assets::script))
        .route("/app.css", get(assets::style))
        .route("/mic-worklet.js", get(assets::mic_worklet))
        .route("/api/info", get(info))
        .route("/api/openapi.json", get(assets::openapi))
        .route("/api/events", get(events::events))
        .route("/api/audio", get(events::audio))
        .route("/api/pis", get(pis::list))
        .route("/api/pis/{pi}/devices", get(pis::devices))
        .route("/api/pis/{pi}/audio_input", post(pis::set_audio_input))
        .route("/api/clips/search", get(library::search))
        .route("/api/clips/films", get(library::films))
        .route("/api/clips/reload", post(library::reload))
        .route("/api/clips/{id}", get(library::clip))
        .route("/api/health/services", get(health_services))
        .route("/metrics", get(metrics::metrics))
        .route("/api/connect", post(connect))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/say", post(say))
        .route("/api/sessions/{id}/end", post(end))
        .route("/api/sessions/{id}/talk", get(talk::talk))
        .route("/conversation-status/{id}", get(conversation_status))
        .route("/update-status", post(update_status))
        .route("/health", get(health))
        .route(
            "/api/cleanup-old-sessions",
            axum::routing::delete(cleanup_old_sessions),
        )
        .route("/api/start_pi_client", post(start_pi_client))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.body_limit,
        ))
        .layer(cors)
        .with_state(state)
}

/// Live streams: guarded like mutations (they carry the conversation as it
/// happens), and they take the token from `?token=` as well, since a
/// browser's EventSource cannot send headers. The microphone socket
/// (`/api/sessions/{id}/talk`) is one too: a browser's WebSocket cannot
/// send headers either.
const STREAMS: [&str; 2] = ["/api/events", "/api/audio"];

fn is_stream(path: &str) -> bool {
    STREAMS.contains(&path)
        || path
            .strip_prefix("/api/sessions/")
            .and_then(|rest| rest.strip_suffix("/talk"))
            .is_some_and(|id| !id.contains('/'))
}

/// Whether `given` is the token, in time that does not depend on where
/// they differ.
fn token_matches(given: Option<&str>, token: &str) -> bool {
    use subtle::ConstantTimeEq;
    given.is_some_and(|g| bool::from(g.as_bytes().ct_eq(token.as_bytes())))
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// Every mutating request, and every live stream, needs
/// `Authorization: Bearer <CINEMA_API_TOKEN>` when a token is configured
/// (streams accept `?token=<CINEMA_API_TOKEN>` too).
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(req).await;
    };
    let mutating = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let stream = is_stream(req.uri().path());
    if !mutating && !stream {
        return next.run(req).await;
    }
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let query_token = stream
        .then(|| Query::<TokenQuery>::try_from_uri(req.uri()).ok())
        .flatten()
        .and_then(|Query(q)| q.token);
    let given = header_token.or(query_token);
    if !token_matches(given.as_deref(), token) {
        let how = if stream {
            "this stream needs `?token=<CINEMA_API_TOKEN>` or `Authorization: Bearer <CINEMA_API_TOKEN>`"
        } else {
            "this endpoint needs `Authorization: Bearer <CINEMA_API_TOKEN>`"
        };
        return AppError::new(StatusCode::UNAUTHORIZED, how).into_response();
    }
    next.run(req).await
}

/// Any other path: 404 in the API's error shape.
async fn not_found(req: Request) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}

/// `GET /api/info`: what the dashboard needs to know before it starts.
async fn info(State(st): State<AppState>) -> Json<Value> {
    Json(json!({
        "service": names::service::DASHBOARD_GATEWAY,
        "version": env!("CARGO_PKG_VERSION"),
        "auth": st.token.is_some(),
        "pi_stale_s": st.config.pi_stale_s,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    #[serde(default)]
    pi_id: String,
    /// The TV is the browser (no Pi): it talks over `/api/sessions/{id}/talk`.
    #[serde(default)]
    browser: bool,
}

fn session_json(s: &Session) -> Value {
    json!({
        "identifier": s.id,
        "room_url": s.room_url,
        "pi_id": s.pi_id,
        "state": s.state().status_word(),
        "pid": s.client_pid,
        "created_at_ms": s.created_at_ms,
        "joined_at_ms": s.joined_at_ms,
        "ended_at_ms": s.ended_at_ms,
        "end_reason": s.end_reason,
        "backend": s.backend,
        "browser": s.browser,
    })
}

/// Seed-compatible: `{room_url, token, identifier}` (plus `pi_id`, `pid`).
/// The body is optional; `{"pi_id": "..."}` targets a Pi.
async fn connect(
    State(st): State<AppState>,
    body: axum::body::Bytes,
) -> Result<Response, AppError> {
    let req: ConnectBody = if body.iter().all(u8::is_ascii_whitespace) {
        ConnectBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("invalid request body: {e}"),
            )
        })?
    };
    let reply: SessionReply = st
        .bus
        .request_with_timeout(
            subjects::rooms::CREATE.into(),
            &CreateSessionRequest {
                pi_id: req.pi_id,
                browser: req.browser,
            },
            Duration::from_secs(20),
        )
        .await?;
    let s = reply.session.unwrap_or_default();
    // The seed handed out the room's meeting token; local rooms have only ours.
    let token = if s.room_token.is_empty() {
        &s.token
    } else {
        &s.room_token
    };
    Ok(Json(json!({
        "room_url": s.room_url,
        "token": token,
        "identifier": s.id,
        "pi_id": s.pi_id,
        "pid": s.client_pid,
        "browser": s.browser,
    }))
    .into_response())
}

pub(crate) async fn load_session(st: &AppState, id: &str) -> Result<Session, AppError> {
    subjects::check_id("session id", id)?;
    let reply: SessionReply = st
        .bus
        .request(
            subjects::rooms::GET.into(),
            &SessionRef {
                session_id: id.into(),
                reason: String::new(),
            },
        )
        .await?;
    Ok(reply.session.unwrap_or_default())
}

async fn get_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(session_json(&load_session(&st, &id).await?)))
}

async fn list_sessions(State(st): State<AppState>) -> Result<Json<Value>, AppError> {
    let list: SessionList = st
        .bus
        .request(subjects::rooms::LIST.into(), &ListSessionsRequest {})
        .await?;
    Ok(Json(
        json!({ "sessions": list.sessions.iter().map(session_json).collect::<Vec<_>>() }),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SayBody {
    text: String,
}

/// Publishes a final transcript as if the visitor had said `text`.
async fn say(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SayBody>,
) -> Result<Response, AppError> {
    let text = body.text.trim();
    if text.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "text must not be empty",
        ));
    }
    if text.chars().count() > MAX_LINE_CHARS {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("text is longer than {MAX_LINE_CHARS} characters"),
        ));
    }
    let session = load_session(&st, &id).await?;
    if matches!(session.state(), SessionState::Ended | SessionState::Failed) {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            format!("session {id} has ended"),
        ));
    }
    let utterance_id = uuid::Uuid::new_v4().simple().to_string();
    let t = Transcript {
        session_id: id.clone(),
        utterance_id: utterance_id.clone(),
        text: text.to_string(),
        language: "en".into(),
        is_final: true,
        source: TranscriptSource::Typed as i32,
        at_ms: wire::now_ms(),
        ..Default::default()
    };
    st.bus
        .publish_durable(
            subjects::session(&id, SessionEvent::Transcript),
            &t,
            &format!("transcript-{utterance_id}"),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "identifier": id, "utterance_id": utterance_id })),
    )
        .into_response())
}

/// The first generation's `POST /update-status` body.
#[derive(Debug, Deserialize)]
struct UpdateStatusBody {
    identifier: String,
    status: String,
    #[serde(default)]
    status_context: Option<Value>,
    /// Accepted and ignored (the first generation's dashboard hint).
    #[serde(default)]
    #[allow(dead_code)]
    ui_override: Option<Value>,
}

/// A status line for a session's record (shown, never read by the director):
/// published as a `StatusUpdate` conversation event, which status-store adds
/// to the record's display messages.
async fn update_status(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<UpdateStatusBody>,
) -> Result<Response, AppError> {
    let id = body.identifier.trim().to_string();
    let status = body.status.trim();
    if status.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status must not be empty",
        ));
    }
    if status.chars().count() > MAX_LINE_CHARS {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("status is longer than {MAX_LINE_CHARS} characters"),
        ));
    }
    let context_json = match &body.status_context {
        None | Some(Value::Null) => String::new(),
        Some(v) => v.to_string(),
    };
    if context_json.len() > 16 * 1024 {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "status_context is larger than 16 KiB",
        ));
    }
    load_session(&st, &id).await?;
    let update_id = uuid::Uuid::new_v4().simple().to_string();
    let ev = ConversationEvent {
        session_id: id.clone(),
        at_ms: wire::now_ms(),
        kind: Some(conversation_event::Kind::StatusUpdate(StatusUpdate {
            status: status.to_string(),
            context_json,
        })),
        ..Default::default()
    };
    st.bus
        .publish_durable(
            subjects::session(&id, SessionEvent::Conversation),
            &ev,
            &format!("status-{update_id}"),
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "identifier": id, "status": status, "accepted": true })),
    )
        .into_response())
}

async fn end(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    subjects::check_id("session id", &id)?;
    let reply: SessionReply = st
        .bus
        .request_with_timeout(
            subjects::rooms::END.into(),
            &SessionRef {
                session_id: id,
                reason: "ended by operator".into(),
            },
            Duration::from_secs(20),
        )
        .await?;
    Ok(Json(session_json(&reply.session.unwrap_or_default())))
}

fn message_json(m: &StatusMessage, display: bool) -> Value {
    if display {
        json!({ "role": m.role, "content": m.content, "clip_id": m.clip_id, "at_ms": m.at_ms })
    } else {
        json!({ "role": m.role, "content": m.content })
    }
}

/// Seed-compatible: `{identifier, status, context: {messages, display_messages}}`.
async fn conversation_status(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    subjects::check_id("session id", &id)?;
    let rec: StatusRecord = st
        .bus
        .request(
            subjects::status::GET.into(),
            &StatusRequest {
                session_id: id.clone(),
            },
        )
        .await?;
    Ok(Json(json!({
        "identifier": id,
        "status": rec.status,
        "context": {
            "messages": rec.messages.iter().map(|m| message_json(m, false)).collect::<Vec<_>>(),
            "display_messages": rec.display_messages.iter().map(|m| message_json(m, true)).collect::<Vec<_>>(),
        },
        "pi_id": rec.pi_id,
        "greetings": rec.greetings,
        "plays": rec.plays,
        "last_error": rec.last_error,
        "end_reason": rec.end_reason,
        "status_update": rec.status_update,
        "updated_at_ms": rec.updated_at_ms,
    })))
}

/// Every service (via `$SRV.PING`) and NATS itself. 503 when any is missing.
async fn health(State(st): State<AppState>) -> Response {
    let client = st.bus.client();
    let connected = matches!(
        client.connection_state(),
        bus::async_nats::connection::State::Connected
    );
    let instances = bus::service::ping_all(client, Duration::from_millis(300))
        .await
        .unwrap_or_default();
    let mut services = serde_json::Map::new();
    let mut healthy = connected;
    for name in names::service::ALL {
        let mine: Vec<Value> = instances
            .iter()
            .filter(|i| i.name == name)
            .map(|i| json!({ "id": i.id, "version": i.version }))
            .collect();
        let mut entry =
            json!({ "status": if mine.is_empty() { "missing" } else { "ok" }, "instances": mine });
        // clip-selector answers during its first ingest, but cannot serve
        // clips until it ends: "loading", with its progress.
        if name == names::service::CLIP_SELECTOR && !mine.is_empty() {
            let films: Option<FilmList> = st
                .bus
                .request_with_timeout(
                    subjects::clips::FILMS.into(),
                    &ListFilmsRequest {},
                    Duration::from_millis(500),
                )
                .await
                .ok();
            if let Some(films) = films.filter(|f| f.loading) {
                let ingest = films.ingest.unwrap_or_default();
                entry["status"] = json!("loading");
                entry["ingest"] =
                    json!({ "done": ingest.progress_done, "todo": ingest.progress_todo });
            }
        }
        // A hub whose TVs are off is healthy: Pis are reported, not required.
        if names::service::HUB.contains(&name) {
            healthy &= entry["status"] == "ok";
        }
        services.insert(name.into(), entry);
    }
    let body = json!({
        "status": if healthy { "ok" } else { "degraded" },
        "nats": {
            "status": if connected { "ok" } else { "disconnected" },
            "server_version": client.server_info().version,
        },
        "services": services,
        "decode_errors": bus::decode_errors(),
    });
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

/// `GET /api/health/services`: every service instance from the NATS
/// services API (`$SRV.STATS`) with its counters, and NATS itself.
async fn health_services(State(st): State<AppState>) -> Json<Value> {
    let client = st.bus.client();
    let stats = bus::service::stats_all(client, metrics::STATS_WAIT)
        .await
        .unwrap_or_default();
    let now = wire::now_ms();
    let instances: Vec<Value> = stats
        .iter()
        .map(|s| {
            json!({
                "name": s.name,
                "id": s.id,
                "version": s.version,
                "started_ms": s.started_ms,
                "uptime_s": (now - s.started_ms).max(0) / 1000,
                "requests": s.requests(),
                "errors": s.errors(),
                "average_processing_ms": s.average_processing_time().as_secs_f64() * 1000.0,
                "endpoints": s.endpoints.iter().map(|e| json!({
                    "name": e.name,
                    "subject": e.subject,
                    "requests": e.requests,
                    "errors": e.errors,
                    "average_processing_ms": e.average_processing_time.as_secs_f64() * 1000.0,
                    "last_error": e.last_error,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    let missing: Vec<&str> = names::service::HUB
        .into_iter()
        .filter(|n| !stats.iter().any(|s| s.name == *n))
        .collect();
    let connected = matches!(
        client.connection_state(),
        bus::async_nats::connection::State::Connected
    );
    let server = client.server_info();
    Json(json!({
        "instances": instances,
        "missing": missing,
        "nats": {
            "status": if connected { "ok" } else { "disconnected" },
            "server_version": server.version,
            "server_name": server.server_name,
            "jetstream": server.jetstream,
        },
        "decode_errors": bus::decode_errors(),
    }))
}

#[derive(Debug, Default, Deserialize)]
struct CleanupQuery {
    /// Ended at least this many seconds ago (default: the configured retention).
    older_than_s: Option<u64>,
}

/// Seed-compatible: removes ended sessions' state.
async fn cleanup_old_sessions(
    State(st): State<AppState>,
    q: Result<Query<CleanupQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = q.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let reply: CleanupReply = st
        .bus
        .request_with_timeout(
            subjects::rooms::CLEANUP.into(),
            &CleanupRequest {
                older_than_s: q.older_than_s,
            },
            Duration::from_secs(30),
        )
        .await?;
    Ok(Json(json!({
        "success": true,
        "message": format!("removed {} ended session(s)", reply.removed),
        "removed": reply.removed,
        "session_ids": reply.session_ids,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartPiClientBody {
    room_url: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    #[allow(dead_code)] // Accepted for compatibility; clients reach the bus, not a URL.
    backend_url: String,
}

/// Seed-compatible: `{roomUrl, token, backendUrl}` → `{success, message, pid, roomUrl}`.
/// Starts (or finds) the client of the session that owns `roomUrl` on its Pi.
async fn start_pi_client(
    State(st): State<AppState>,
    ApiJson(body): ApiJson<StartPiClientBody>,
) -> Response {
    let result: Result<(u32, String), AppError> = async {
        let list: SessionList = st
            .bus
            .request(subjects::rooms::LIST.into(), &ListSessionsRequest {})
            .await?;
        let s = list
            .sessions
            .into_iter()
            .find(|s| s.room_url == body.room_url)
            .ok_or_else(|| {
                AppError::new(
                    StatusCode::NOT_FOUND,
                    format!("no session has room {:?}", body.room_url),
                )
            })?;
        if matches!(s.state(), SessionState::Ended | SessionState::Failed) {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                format!("session {} has ended", s.id),
            ));
        }
        if s.browser {
            return Err(AppError::new(
                StatusCode::CONFLICT,
                format!("session {} is a browser's: its page is the client", s.id),
            ));
        }
        if !body.token.is_empty() && body.token != s.token && body.token != s.room_token {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "the token does not belong to this room",
            ));
        }
        let spawn = SpawnRequest {
            session_id: s.id.clone(),
            token: s.token.clone(),
            room_url: s.room_url.clone(),
            room_token: s.room_token.clone(),
        };
        let reply: SpawnReply = st
            .bus
            .request_with_timeout(
                subjects::pi_spawn(&s.pi_id),
                &spawn,
                Duration::from_secs(15),
            )
            .await?;
        Ok((reply.pid, s.room_url))
    }
    .await;
    match result {
        Ok((pid, room_url)) => Json(json!({
            "success": true,
            "message": format!("pi-client running with pid {pid}"),
            "pid": pid,
            "roomUrl": room_url,
        }))
        .into_response(),
        Err(e) => (
            e.status,
            Json(json!({ "success": false, "message": e.message, "error": e.message })),
        )
            .into_response(),
    }
}
