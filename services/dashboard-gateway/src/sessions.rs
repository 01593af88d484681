//! The sessions: the first generation's API (`POST /api/connect`,
//! `GET /conversation-status/{id}`, `POST /update-status`,
//! `DELETE /api/cleanup-old-sessions`, `POST /api/start_pi_client`) and
//! ours (`/api/sessions`: list, one, say a line, end).

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use serde::Deserialize;
use serde_json::{Value, json};
use wire::v1::{
    CleanupReply, CleanupRequest, ConversationEvent, CreateSessionRequest, ListSessionsRequest,
    Session, SessionList, SessionRef, SessionReply, SessionState, SpawnReply, SpawnRequest,
    StatusMessage, StatusRecord, StatusRequest, StatusUpdate, Transcript, TranscriptSource,
    conversation_event,
};

use crate::error::{ApiJson, AppError};
use crate::state::AppState;

/// Longest typed line accepted.
pub const MAX_LINE_CHARS: usize = 1000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/connect", post(connect))
        .route("/api/sessions", get(list_sessions))
        .route("/api/sessions/{id}", get(get_session))
        .route("/api/sessions/{id}/say", post(say))
        .route("/api/sessions/{id}/end", post(end))
        .route("/conversation-status/{id}", get(conversation_status))
        .route("/update-status", post(update_status))
        .route("/api/cleanup-old-sessions", delete(cleanup_old_sessions))
        .route("/api/start_pi_client", post(start_pi_client))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectBody {
    #[serde(default)]
    pi_id: String,
    /// The TV is the browser (no Pi): it talks over `/api/sessions/{id}/talk`.
    #[serde(default)]
    browser: bool,
    /// The first generation's RTVI client options (`[{"service": "tts",
    /// "options": [...]}]`) and services map: accepted and ignored (the TV
    /// answers with clips, so there is no voice to choose).
    #[serde(default)]
    #[allow(dead_code)]
    config: Option<Value>,
    #[serde(default)]
    #[allow(dead_code)]
    services: Option<Value>,
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
            &endpoints::rooms::CREATE,
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
async fn get_session(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AppError> {
    Ok(Json(session_json(&st.session(&id).await?)))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    /// At most this many (1-500; 100 when absent).
    limit: Option<u32>,
    /// The `next` of the page before.
    after: Option<String>,
}

/// Empty, or a page's `next`: `<created ms>:<session id>` (what the API
/// document's pattern says).
fn is_cursor(after: &str) -> bool {
    if after.is_empty() {
        return true;
    }
    let Some((at, id)) = after.split_once(':') else {
        return false;
    };
    let digits = at.strip_prefix('-').unwrap_or(at);
    (1..=19).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// `GET /api/sessions[?limit=N&after=NEXT]`: `{sessions, next}`, newest
/// first, a page at a time; `next` is empty on the last page.
async fn list_sessions(
    State(st): State<AppState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = q.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("limit must be 1-500, not {limit}"),
        ));
    }
    let after = q.after.unwrap_or_default();
    if !is_cursor(&after) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "after is the `next` of the page before (`<ms>:<session id>`)",
        ));
    }
    let list: SessionList = st
        .bus
        .request(
            &endpoints::rooms::LIST,
            &ListSessionsRequest {
                limit,
                after,
                ..Default::default()
            },
        )
        .await?;
    Ok(Json(json!({
        "sessions": list.sessions.iter().map(session_json).collect::<Vec<_>>(),
        "next": list.next,
    })))
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
    let session = st.session(&id).await?;
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
            &bus::ids::transcript(&utterance_id),
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
    /// The first generation's hint to its dashboard: accepted, ignored, and
    /// answered back as it came.
    #[serde(default)]
    ui_override: Option<Value>,
    /// The first generation's whole record (`{"messages": [...],
    /// "status_messages": [...]}`), which its bot sometimes sent back:
    /// accepted and ignored (the record is built from the bus).
    #[serde(default)]
    #[allow(dead_code)]
    context: Option<Value>,
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
    st.session(&id).await?;
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
            &bus::ids::status_update(&update_id),
        )
        .await?;
    // The first generation answered 200 with the participant's status;
    // its bot logs anything else as a failure.
    Ok(Json(json!({
        "identifier": id,
        "status": status,
        "status_context": body.status_context,
        "ui_override": body.ui_override,
        "accepted": true,
    }))
    .into_response())
}

async fn end(
    State(st): State<AppState>,
    Path(id): Path<String>,
    _: crate::error::NoBody,
) -> Result<Json<Value>, AppError> {
    subjects::check_id("session id", &id)?;
    let reply: SessionReply = st
        .bus
        .request_with_timeout(
            &endpoints::rooms::END,
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

#[derive(Debug, Default, Deserialize)]
struct StatusQuery {
    /// The first generation's paging: status messages from this index on.
    #[serde(default)]
    last_seen: usize,
}

/// Seed-compatible: `{identifier, status, status_context, ui_override,
/// context: {messages, display_messages, status_messages,
/// total_message_count}}`; `?last_seen=N` returns the status messages from
/// the N-th on. A session with no record yet (or none at all) is
/// `{"status": "initializing", "context": {}}`, as the first generation
/// answered.
async fn conversation_status(
    State(st): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = q.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    subjects::check_id("session id", &id)?;
    let rec: StatusRecord = match st
        .bus
        .request(
            &endpoints::status::GET,
            &StatusRequest {
                session_id: id.clone(),
            },
        )
        .await
    {
        Ok(rec) => rec,
        Err(bus::Error::Remote { code: 404, .. }) => {
            return Ok(Json(json!({
                "identifier": id,
                "status": "initializing",
                "status_context": null,
                "ui_override": null,
                "context": {},
            })));
        }
        Err(e) => return Err(e.into()),
    };
    let status_messages: Vec<&str> = rec
        .display_messages
        .iter()
        .filter(|m| m.role == "system")
        .map(|m| m.content.as_str())
        .collect();
    let status_context = (!rec.status_context_json.is_empty())
        .then(|| serde_json::from_str::<Value>(&rec.status_context_json).ok())
        .flatten();
    Ok(Json(json!({
        "identifier": id,
        "status": rec.status,
        "status_context": status_context,
        "ui_override": null,
        "context": {
            "messages": rec.messages.iter().map(|m| message_json(m, false)).collect::<Vec<_>>(),
            "display_messages": rec.display_messages.iter().map(|m| message_json(m, true)).collect::<Vec<_>>(),
            "status_messages": status_messages.get(q.last_seen..).unwrap_or_default(),
            "total_message_count": status_messages.len(),
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
            &endpoints::rooms::CLEANUP,
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
            .request(
                &endpoints::rooms::LIST,
                &ListSessionsRequest {
                    room_url: body.room_url.clone(),
                    limit: 1,
                    ..Default::default()
                },
            )
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
                &endpoints::pi_spawn(&s.pi_id),
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
