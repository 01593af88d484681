//! The API's error answer, `{"error": message}` with a status, and the JSON
//! body extractor whose rejections answer in that shape. Depends on nothing
//! else of the gateway.

use axum::Json;
use axum::extract::FromRequest;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

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
