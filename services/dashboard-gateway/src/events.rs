//! Live updates over server-sent events: `GET /api/events` (every session
//! event, from the relay, after the stored records) and `GET /api/audio`
//! (input levels from its own subscription, throttled).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bus::endpoints;
use bus::subjects;
use futures::{Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wire::v1::{
    AudioFrame, ListSessionsRequest, SessionList, SessionState, StatusRecord, StatusRequest,
};

use crate::error::AppError;
use crate::metrics::SseClient;
use crate::relay::Relayed;
use crate::state::AppState;

/// A comment line this often keeps proxies from closing an idle stream.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Input levels sent per session per second (`GET /api/audio`).
pub const LEVELS_PER_S: u64 = 10;
/// Live sessions whose records a new all-sessions stream starts with.
const CATCH_UP_SESSIONS: usize = 50;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/events", get(events))
        .route("/api/audio", get(audio))
}

#[derive(Debug, Default, Deserialize)]
pub struct StreamQuery {
    /// Only this session (all sessions when absent).
    session: Option<String>,
    /// The API token, for clients that cannot send headers (EventSource);
    /// checked by the auth middleware.
    #[allow(dead_code)]
    token: Option<String>,
}

impl StreamQuery {
    fn session(&self) -> Result<Option<&str>, AppError> {
        match self.session.as_deref().filter(|s| !s.is_empty()) {
            Some(sid) => {
                subjects::check_id("session id", sid)?;
                Ok(Some(sid))
            }
            None => Ok(None),
        }
    }
}

fn query<T: Default + for<'de> Deserialize<'de>>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, AppError> {
    q.map(|Query(q)| q)
        .map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))
}

/// The stored record of a session as an SSE `record` event, if it has one.
async fn record_event(st: &AppState, sid: &str) -> Option<Event> {
    let rec: StatusRecord = match st
        .bus
        .request(
            &endpoints::status::GET,
            &StatusRequest {
                session_id: sid.into(),
            },
        )
        .await
    {
        Ok(rec) => rec,
        Err(e) => {
            tracing::debug!(session = %sid, error = %e, "No record to catch up from.");
            return None;
        }
    };
    let data = json!({
        "session_id": sid,
        "event": "record",
        "type": <StatusRecord as wire::Name>::full_name(),
        "message": st.hub.decoder.message(&rec),
    });
    Some(Event::default().event("record").data(data.to_string()))
}

/// Sessions not yet over, newest first (none when room-manager is away).
async fn live_sessions(st: &AppState) -> Vec<String> {
    match st
        .bus
        .request::<_, SessionList>(
            &endpoints::rooms::LIST,
            &ListSessionsRequest {
                live_only: true,
                limit: CATCH_UP_SESSIONS as u32,
                ..Default::default()
            },
        )
        .await
    {
        Ok(list) => list
            .sessions
            .into_iter()
            .filter(|s| matches!(s.state(), SessionState::Waiting | SessionState::Active))
            .take(CATCH_UP_SESSIONS)
            .map(|s| s.id)
            .collect(),
        Err(e) => {
            tracing::debug!(error = %e, "Cannot list sessions to catch up from.");
            Vec::new()
        }
    }
}

fn sse_event(ev: &Relayed) -> Event {
    Event::default()
        .event(ev.event.token())
        .id(ev.id.to_string())
        .data(&ev.data)
}

/// `GET /api/events[?session=ID]`: every session event as SSE, `event:` the
/// event kind, `id:` the relay's number, `data:` JSON. The stream starts with
/// the stored record of the session (or of every live session) as `record`
/// events, so a client that reconnects catches up; a client too slow for the
/// stream gets a `lagged` event with the number of events it missed.
async fn events(
    State(st): State<AppState>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let session = q.session()?.map(str::to_string);
    let slot = st.sse_slot()?;
    // Subscribed before the records are read: nothing falls between them.
    let rx = st.hub.subscribe();
    let client = st.metrics.sse_client("events", Some(slot));
    let sids = match &session {
        Some(sid) => vec![sid.clone()],
        None => live_sessions(&st).await,
    };
    let records = futures::future::join_all(sids.iter().map(|sid| record_event(&st, sid)))
        .await
        .into_iter()
        .flatten()
        .map(Ok::<_, Infallible>);
    let closing = st.hub.closing();
    let stream = futures::stream::iter(records).chain(live(rx, session, client, closing));
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

fn live(
    rx: broadcast::Receiver<Arc<Relayed>>,
    session: Option<String>,
    client: SseClient,
    closing: CancellationToken,
) -> impl Stream<Item = Result<Event, Infallible>> {
    futures::stream::unfold(
        (rx, session, client, closing),
        |(mut rx, session, client, closing)| async move {
            loop {
                let received = tokio::select! {
                    () = closing.cancelled() => return None,
                    r = rx.recv() => r,
                };
                match received {
                    Ok(ev) => {
                        if session.as_ref().is_none_or(|s| *s == ev.session_id) {
                            let out = sse_event(&ev);
                            return Some((Ok(out), (rx, session, client, closing)));
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        let out = Event::default()
                            .event("lagged")
                            .data(json!({ "missed": missed }).to_string());
                        return Some((Ok(out), (rx, session, client, closing)));
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        },
    )
}

/// `GET /api/audio[?session=ID]`: the input level of each session's
/// microphone (the loudest 20 ms frame of each tenth of a second) as SSE
/// `level` events: `{session_id, level, seq}`.
async fn audio(
    State(st): State<AppState>,
    q: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let q = query(q)?;
    let subject = match q.session()? {
        Some(sid) => subjects::session_audio(sid),
        None => subjects::AUDIO_WILDCARD.to_string(),
    };
    let slot = st.sse_slot()?;
    let sub = st
        .bus
        .client()
        .subscribe(subject)
        .await
        .map_err(|e| AppError::from(bus::Error::nats("subscribe", e)))?;
    let client = st.metrics.sse_client("audio", Some(slot));
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    tokio::spawn(levels(sub, tx, client, st.hub.closing()));
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|ev| (Ok::<_, Infallible>(ev), rx))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response())
}

/// Reads audio frames and sends each session's loudest level every tick,
/// until the SSE client goes away.
async fn levels(
    mut sub: bus::async_nats::Subscriber,
    tx: tokio::sync::mpsc::Sender<Event>,
    _client: SseClient,
    closing: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_millis(1000 / LEVELS_PER_S));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    // Per session: the loudest level since the last tick and its frame number.
    let mut loudest: HashMap<String, (f32, u64)> = HashMap::new();
    loop {
        tokio::select! {
            () = tx.closed() => break,
            () = closing.cancelled() => break,
            msg = sub.next() => {
                let Some(msg) = msg else { break };
                let Ok(frame) = bus::decode_message::<AudioFrame>(&msg) else { continue };
                let Some(sid) = subjects::parse_audio(&msg.subject) else { continue };
                let level = if frame.level.is_finite() { frame.level.clamp(0.0, 1.0) } else { 0.0 };
                let e = loudest.entry(sid.to_string()).or_insert((0.0, 0));
                if level >= e.0 {
                    *e = (level, frame.seq);
                }
            }
            _ = tick.tick() => {
                for (sid, (level, seq)) in loudest.drain() {
                    let data = json!({ "session_id": sid, "level": level, "seq": seq });
                    let ev = Event::default().event("level").data(data.to_string());
                    if tx.try_send(ev).is_err() && tx.is_closed() {
                        return;
                    }
                }
            }
        }
    }
    let _ = sub.unsubscribe().await;
}
