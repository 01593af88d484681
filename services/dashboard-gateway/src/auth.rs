//! Who may call what: with `CINEMA_API_TOKEN` set, every mutating request
//! and every live stream needs it.

use axum::extract::{Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::AppError;
use crate::state::AppState;

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
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
