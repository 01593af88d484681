//! The whole HTTP API as one router (so tests can call it without
//! sockets): every resource's routes, the token check, request counting,
//! CORS, the body limit and a 404 in the API's error shape.

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};

use crate::error::AppError;
use crate::state::AppState;
use crate::{assets, auth, events, health, library, pis, sessions, talk};

pub fn app(state: AppState) -> Router {
    let cors = {
        let origins: Vec<HeaderValue> = state
            .config
            .cors_origins
            .iter()
            .filter_map(|o| o.parse().ok())
            .collect();
        tower_http::cors::CorsLayer::new()
            .allow_origin(origins)
            .allow_methods([Method::GET, Method::POST, Method::DELETE])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
    };
    Router::new()
        .merge(assets::router())
        .merge(sessions::router())
        .merge(talk::router())
        .merge(events::router())
        .merge(pis::router())
        .merge(library::router())
        .merge(health::router())
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::guard,
        ))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            health::track,
        ))
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(
            state.config.body_limit,
        ))
        .layer(cors)
        .with_state(state)
}

/// Any other path: 404 in the API's error shape.
async fn not_found(req: Request) -> AppError {
    AppError::new(
        StatusCode::NOT_FOUND,
        format!("no such endpoint: {} {}", req.method(), req.uri().path()),
    )
}
