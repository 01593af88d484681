//! The API's error answer, `{"error": message}` with a status, and the JSON
//! body extractor whose rejections answer in that shape. Depends on nothing
//! else of the gateway.

use axum::Json;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answer: `{"error": message}` with a status. A 4xx message says
/// what the caller did wrong; a 5xx message never carries a service's
/// internal text (that is logged where it happened, and by the gateway).
#[derive(Debug)]
pub struct AppError {
    pub(crate) status: StatusCode,
    pub(crate) message: String,
    /// Seconds for `Retry-After` (a limit that frees up).
    retry_after: Option<u32>,
}

impl AppError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AppError {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    /// Answers with `Retry-After: secs`.
    pub(crate) fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = %self.status, message = %self.message, "A request failed.");
        }
        let mut resp = (self.status, Json(json!({ "error": self.message }))).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, secs.into());
        }
        resp
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
        let detail = match e {
            bus::Error::Remote { message, .. } => message,
            other => other.to_string(),
        };
        if !status.is_server_error() {
            // A refusal: it says what the caller asked for that cannot be.
            return AppError::new(status, detail);
        }
        // What went wrong inside is for the log, not for the caller.
        tracing::warn!(status = %status, detail = %detail, "A service could not answer a request.");
        let message = if status == StatusCode::SERVICE_UNAVAILABLE {
            "no service answers this request right now; GET /health says which is missing"
        } else {
            "a service failed while answering this request; the services' logs say why"
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

/// The body of a request that takes none: nothing, or a JSON object (whose
/// fields are ignored). Anything else is a 422, so a client that meant to
/// send something learns it was not read.
pub struct NoBody;

impl<S: Send + Sync> FromRequest<S> for NoBody {
    type Rejection = AppError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, AppError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| AppError::new(e.status(), e.body_text()))?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(NoBody);
        }
        match serde_json::from_slice::<serde_json::Value>(&bytes) {
            Ok(serde_json::Value::Object(_)) => Ok(NoBody),
            Ok(_) => Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this endpoint takes no body: send {} or nothing",
            )),
            Err(e) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                format!("invalid JSON body: {e}"),
            )),
        }
    }
}
