//! How the hub is doing: `/health` (the hub's services and NATS; the Pis
//! reported beside them), `/api/health/services` (every instance's
//! counters), `/api/info`, `/metrics`, and the middleware that counts every
//! request for it.

use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use bus::endpoints;
use bus::names;
use serde_json::{Value, json};
use wire::v1::{FilmList, ListFilmsRequest};

use crate::metrics;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/api/health/services", get(health_services))
        .route("/api/info", get(info))
        .route("/metrics", get(metrics))
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
                    &endpoints::clips::FILMS,
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

/// Counts every routed request by its route pattern (`/api/sessions/{id}`,
/// not the id), method and status.
pub async fn track(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    // A client may send any method name: the label takes the standard
    // ones, and one "other" for the rest (a label per made-up method would
    // grow without bound).
    let method = match *req.method() {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::PATCH
        | Method::OPTIONS => req.method().as_str(),
        _ => "other",
    }
    .to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    st.metrics
        .http(&route, &method, resp.status(), started.elapsed());
    resp
}

/// `GET /metrics`.
async fn metrics(State(st): State<AppState>) -> Response {
    let services = bus::service::stats_all(st.bus.client(), metrics::STATS_WAIT)
        .await
        .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        st.metrics.render(&services),
    )
        .into_response()
}
