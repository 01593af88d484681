//! The dashboard: plain HTML, CSS and JavaScript compiled into the binary
//! (no build step, nothing fetched from elsewhere).

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");
const MIC_WORKLET_JS: &str = include_str!("../assets/mic-worklet.js");
const OPENAPI_JSON: &str = include_str!("../assets/openapi.json");

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

pub async fn index() -> Response {
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

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", APP_CSS)
}

/// The page's microphone processor (an AudioWorklet module).
pub async fn mic_worklet() -> Response {
    asset("text/javascript; charset=utf-8", MIC_WORKLET_JS)
}

/// `GET /api/openapi.json`: the API described (OpenAPI 3.1).
pub async fn openapi() -> Response {
    asset("application/json", OPENAPI_JSON)
}
