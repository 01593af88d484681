//! A local double of Daily.co's REST API (`/rooms`, `/meeting-tokens`),
//! speaking its documented wire format, recording every request, and
//! failing on command.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use serde_json::{Value, json};

/// One request the double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub auth: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    rooms: HashMap<String, Value>,
    /// path prefix → (status, error body) to answer instead.
    failures: HashMap<String, (u16, Value)>,
    tokens: u32,
}

#[derive(Clone)]
pub struct DailyDouble {
    inner: Arc<Mutex<Inner>>,
    url: String,
}

impl DailyDouble {
    /// Serves on a free loopback port until the runtime ends.
    pub async fn start() -> DailyDouble {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/rooms", post(create_room).get(list_rooms))
            .route("/v1/rooms/{name}", delete(delete_room))
            .route("/v1/meeting-tokens", post(meeting_token))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        DailyDouble { inner, url }
    }

    /// The base URL to use as `DAILY_API_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Answers requests whose path starts with `path` (e.g. `/v1/rooms`) with
    /// `status` and Daily's error shape.
    pub fn fail(&self, path: &str, status: u16, info: &str) {
        self.inner.lock().unwrap().failures.insert(
            path.to_string(),
            (
                status,
                json!({ "error": "invalid-request-error", "info": info }),
            ),
        );
    }

    pub fn heal(&self) {
        self.inner.lock().unwrap().failures.clear();
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.inner.lock().unwrap().requests.clone()
    }

    /// Names of the rooms that exist now.
    pub fn rooms(&self) -> Vec<String> {
        let mut r: Vec<String> = self.inner.lock().unwrap().rooms.keys().cloned().collect();
        r.sort();
        r
    }
}

type S = State<Arc<Mutex<Inner>>>;

fn record(
    inner: &Mutex<Inner>,
    method: &str,
    path: String,
    headers: &HeaderMap,
    body: Value,
) -> Option<Response> {
    let mut g = inner.lock().unwrap();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    g.requests.push(Recorded {
        method: method.into(),
        path: path.clone(),
        auth: auth.clone(),
        body,
    });
    if !auth.starts_with("Bearer ") {
        return Some(
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": "authorization-header-error", "info": "missing bearer"})),
            )
                .into_response(),
        );
    }
    g.failures
        .iter()
        .find(|(prefix, _)| path.starts_with(prefix.as_str()))
        .map(|(_, (status, body))| {
            (StatusCode::from_u16(*status).unwrap(), Json(body.clone())).into_response()
        })
}

async fn create_room(State(inner): S, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = record(&inner, "POST", "/v1/rooms".into(), &headers, body.clone()) {
        return r;
    }
    let name = body["name"]
        .as_str()
        .unwrap_or("generated-room")
        .to_string();
    let room = json!({
        "id": format!("id-{name}"),
        "name": name,
        "api_created": true,
        "privacy": body["privacy"],
        "url": format!("https://cinema.daily.co/{name}"),
        "created_at": "2026-11-23T00:00:00.000Z",
        "config": body["properties"],
    });
    inner.lock().unwrap().rooms.insert(name, room.clone());
    Json(room).into_response()
}

async fn list_rooms(State(inner): S, headers: HeaderMap) -> Response {
    if let Some(r) = record(&inner, "GET", "/v1/rooms".into(), &headers, Value::Null) {
        return r;
    }
    let data: Vec<Value> = inner.lock().unwrap().rooms.values().cloned().collect();
    Json(json!({ "total_count": data.len(), "data": data })).into_response()
}

async fn delete_room(State(inner): S, headers: HeaderMap, Path(name): Path<String>) -> Response {
    if let Some(r) = record(
        &inner,
        "DELETE",
        format!("/v1/rooms/{name}"),
        &headers,
        Value::Null,
    ) {
        return r;
    }
    match inner.lock().unwrap().rooms.remove(&name) {
        Some(_) => Json(json!({ "deleted": true, "name": name })).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "not-found", "info": format!("room {name} not found")})),
        )
            .into_response(),
    }
}

async fn meeting_token(State(inner): S, headers: HeaderMap, Json(body): Json<Value>) -> Response {
    if let Some(r) = record(&inner, "POST", "/v1/meeting-tokens".into(), &headers, body) {
        return r;
    }
    let mut g = inner.lock().unwrap();
    g.tokens += 1;
    Json(json!({ "token": format!("daily-meeting-token-{}", g.tokens) })).into_response()
}
