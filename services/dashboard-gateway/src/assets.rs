//! The dashboard: plain HTML, CSS and JavaScript compiled into the binary
//! (no build step, nothing fetched from elsewhere).

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const MIC_WORKLET_JS: &str = include_str!("../assets/mic-worklet.js");
const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(script))
        .route("/app.css", get(style))
        .route("/mic-worklet.js", get(mic_worklet))
        .route("/api/openapi.json", get(openapi))
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            // Revalidated on every load, so a new gateway's page is used at once.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut resp = asset("text/html; charset=utf-8", INDEX_HTML);
    // Everything the page loads comes from this gateway, except the films,
    // which clip-selector serves on its own port.
    resp.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        header::HeaderValue::from_static(
            "default-src 'self'; media-src 'self' http: https:; img-src 'self' data: http: https:; \
             frame-ancestors 'none'",
        ),
    );
    resp
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's microphone processor (an AudioWorklet module).
async fn mic_worklet() -> Response {
    asset("text/javascript; charset=utf-8", MIC_WORKLET_JS)
}

/// `GET /api/openapi.json`: the API described (OpenAPI 3.1).
async fn openapi() -> Response {
    asset("application/json", OPENAPI_JSON)
}
