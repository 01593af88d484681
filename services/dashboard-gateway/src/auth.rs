//! Who may call what, checked before any handler runs:
//!
//! - **Host**: without `CINEMA_API_TOKEN` (the gateway then listens on
//!   loopback only), or whenever `allowed_hosts` is set, a request whose
//!   `Host` is not one of the gateway's names is refused. A page on another
//!   site that rebinds its DNS name to 127.0.0.1 reaches nothing.
//! - **Token**: with `CINEMA_API_TOKEN` set, everything but the dashboard's
//!   own files, `/health`, `/api/info` and the API document needs it:
//!   whatever shows what visitors said, the sessions, the Pis, the metrics
//!   or the library. `CINEMA_API_READ_TOKEN` (optional) opens the reads and
//!   the live streams only, for a wall display.
//! - **Cross-site writes**: a `POST` must say `Content-Type:
//!   application/json` (a form or a no-cors `fetch` from another site cannot
//!   without a CORS preflight, which only `cors_origins` pass), and a
//!   mutating request that names an `Origin` must come from this gateway's
//!   own origin or one in `cors_origins`.

use axum::extract::{MatchedPath, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::error::AppError;
use crate::state::AppState;

/// Served to anyone who may reach the gateway: the dashboard's own files
/// (the page asks for the token before it shows anything), the liveness
/// check compose and monitors use, what the page needs to know first, and
/// the API's description.
const PUBLIC: [&str; 7] = [
    "/",
    "/app.js",
    "/app.css",
    "/mic-worklet.js",
    "/health",
    "/api/info",
    "/api/openapi.json",
];

/// The routes that change something (method, route pattern): the only
/// ones whose requests the cross-site checks look at. Any other method on
/// a route is axum's 405. (A router test keeps this and the routes in step.)
pub const WRITES: [(&str, &str); 8] = [
    ("POST", "/api/connect"),
    ("POST", "/api/sessions/{id}/say"),
    ("POST", "/api/sessions/{id}/end"),
    ("POST", "/update-status"),
    ("POST", "/api/start_pi_client"),
    ("POST", "/api/pis/{pi}/audio_input"),
    ("POST", "/api/clips/reload"),
    ("DELETE", "/api/cleanup-old-sessions"),
];

/// Live streams take the token from `?token=` as well, since a browser's
/// EventSource cannot send headers.
const STREAMS: [&str; 2] = ["/api/events", "/api/audio"];

/// The microphone socket (`/api/sessions/{id}/talk`): a browser's WebSocket
/// cannot send headers either. It carries a visitor's voice in, so the
/// read-only token does not open it.
fn is_talk(path: &str) -> bool {
    path.strip_prefix("/api/sessions/")
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

/// The host part of a `Host` header or an origin's authority: without the
/// port, brackets kept for IPv6 (`[::1]`), lowercased.
fn host_name(authority: &str) -> String {
    let authority = authority.trim();
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map(|(h, _)| format!("{h}]"))
            .unwrap_or_else(|| authority.to_string())
    } else {
        authority
            .rsplit_once(':')
            .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
            .map(|(h, _)| h.to_string())
            .unwrap_or_else(|| authority.to_string())
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The names loopback answers to.
fn is_loopback_name(host: &str) -> bool {
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// Whether a request naming `host` is for this gateway.
pub(crate) fn host_allowed(st: &AppState, host: &str) -> bool {
    let host = host_name(host);
    let configured = &st.config.allowed_hosts;
    if configured.iter().any(|h| h == "*") {
        return true;
    }
    if configured.iter().any(|h| host_name(h) == host) {
        return true;
    }
    // Loopback names are always the gateway's own (its health check and a
    // local operator use them).
    is_loopback_name(&host)
}

/// Whether the Host check applies: always without a token (loopback only),
/// and with one whenever names are configured.
fn checks_host(st: &AppState) -> bool {
    st.token.is_none() || !st.config.allowed_hosts.is_empty()
}

/// Whether `origin` (a browser's `Origin` header) is this gateway's own
/// origin (same authority as `Host`) or one `cors_origins` allows.
pub(crate) fn origin_allowed(st: &AppState, headers: &HeaderMap, origin: &str) -> bool {
    if st.config.cors_origins.iter().any(|o| o == origin) {
        return true;
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    host.is_some_and(|h| {
        origin
            .split_once("://")
            .is_some_and(|(_, rest)| rest.eq_ignore_ascii_case(h))
    })
}

/// `application/json`, or `application/<something>+json`, with any
/// parameters (`; charset=utf-8`).
fn is_json(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence
        .strip_prefix("application/")
        .is_some_and(|sub| sub == "json" || sub.ends_with("+json"))
}

fn refuse(status: StatusCode, message: impl Into<String>) -> Response {
    AppError::new(status, message).into_response()
}

/// The checks above, in order: Host, cross-site writes, token.
pub async fn guard(State(st): State<AppState>, req: Request, next: Next) -> Response {
    if checks_host(&st) {
        // A request without a Host (HTTP/1.0) names no other site.
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or("?").to_string())
            .or_else(|| req.uri().authority().map(|a| a.to_string()));
        if let Some(host) = host
            && !host_allowed(&st, &host)
        {
            return refuse(
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this gateway does not answer for host {:?}: add the name to CINEMA_GATEWAY_ALLOWED_HOSTS",
                    host_name(&host)
                ),
            );
        }
    }
    let method = req.method().clone();
    let reads = matches!(method, Method::GET | Method::HEAD | Method::OPTIONS);
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_default();
    let write = !reads && WRITES.contains(&(method.as_str(), route.as_str()));
    if write {
        if let Some(origin) = req.headers().get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            if !origin_allowed(&st, req.headers(), origin) {
                return refuse(
                    StatusCode::FORBIDDEN,
                    format!(
                        "pages from {origin:?} may not change anything here (not this gateway's origin, nor in CINEMA_GATEWAY_CORS_ORIGINS)"
                    ),
                );
            }
        }
        if method == Method::POST {
            let json = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(is_json);
            if !json {
                return refuse(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "send the body as JSON with `Content-Type: application/json` (`{}` when there is nothing to say)",
                );
            }
        }
    }
    let Some(token) = &st.token else {
        return next.run(req).await;
    };
    let path = req.uri().path();
    if reads && PUBLIC.contains(&path) {
        return next.run(req).await;
    }
    let talk = is_talk(path);
    let stream = talk || STREAMS.contains(&path);
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
    let full = token_matches(given.as_deref(), token);
    let read_only = !full
        && reads
        && !talk
        && st
            .read_token
            .as_deref()
            .is_some_and(|t| token_matches(given.as_deref(), t));
    if full || read_only {
        return next.run(req).await;
    }
    let how = if stream {
        "this stream needs `?token=<CINEMA_API_TOKEN>` or `Authorization: Bearer <CINEMA_API_TOKEN>`"
    } else if reads {
        "this endpoint needs `Authorization: Bearer <CINEMA_API_TOKEN>` (or the read-only CINEMA_API_READ_TOKEN)"
    } else {
        "this endpoint needs `Authorization: Bearer <CINEMA_API_TOKEN>`"
    };
    let mut resp = refuse(StatusCode::UNAUTHORIZED, how);
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_lose_their_port_and_case() {
        assert_eq!(host_name("LocalHost:8765"), "localhost");
        assert_eq!(host_name("[::1]:8765"), "[::1]");
        assert_eq!(host_name("[::1]"), "[::1]");
        assert_eq!(host_name("example.com."), "example.com");
        assert_eq!(host_name("10.0.0.5"), "10.0.0.5");
    }

    #[test]
    fn loopback_names() {
        for h in [
            "localhost",
            "tv.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "[::1]",
        ] {
            assert!(is_loopback_name(h), "{h}");
        }
        for h in [
            "evil.example",
            "localhost.evil.example",
            "10.0.0.1",
            "[::2]",
            "0.0.0.0",
        ] {
            assert!(!is_loopback_name(h), "{h}");
        }
    }

    #[test]
    fn json_content_types() {
        for t in [
            "application/json",
            "Application/JSON; charset=utf-8",
            "application/merge-patch+json",
        ] {
            assert!(is_json(t), "{t}");
        }
        for t in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json(t), "{t}");
        }
    }

    #[test]
    fn the_talk_socket_path() {
        assert!(is_talk("/api/sessions/abc/talk"));
        assert!(!is_talk("/api/sessions/abc/say"));
        assert!(!is_talk("/api/sessions/a/b/talk"));
    }
}
