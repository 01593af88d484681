//! The library: the same search the directors use, the films, one clip with
//! the URL its film is served from (clip-selector's media over HTTP).

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use bus::endpoints;
use serde::Deserialize;
use serde_json::{Value, json};
use wire::v1::{
    FilmList, GetClipReply, GetClipRequest, IngestSummary, ListFilmsRequest, ReloadRequest,
    SearchMode, SearchReply, SearchRequest,
};

use crate::error::AppError;
use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/clips/search", get(search))
        .route("/api/clips/films", get(films))
        .route("/api/clips/reload", post(reload))
        .route("/api/clips/{id}", get(clip))
}

/// Longest search query accepted.
pub const MAX_QUERY_CHARS: usize = 500;
/// Most hits one search returns.
pub const MAX_HITS: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    q: String,
    /// `answer` (default: clips whose line answers `q`) or `description`.
    mode: Option<String>,
    limit: Option<u32>,
    /// Only this film.
    film: Option<String>,
}

/// `GET /api/clips/search?q=…&mode=answer|description&limit=10&film=ID`:
/// `{hits: [{clip, score}], library_size}`.
async fn search(
    State(st): State<AppState>,
    q: Result<Query<SearchQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AppError> {
    let Query(q) = q.map_err(|e| AppError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let text = q.q.trim();
    if text.is_empty() {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "q must not be empty",
        ));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("q is longer than {MAX_QUERY_CHARS} characters"),
        ));
    }
    let mode = match q.mode.as_deref().unwrap_or("answer") {
        "answer" => SearchMode::Answer,
        "description" => SearchMode::Description,
        other => {
            return Err(AppError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("mode must be `answer` or `description`, not {other:?}"),
            ));
        }
    };
    let limit = q.limit.unwrap_or(10);
    if !(1..=MAX_HITS).contains(&limit) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("limit must be 1-{MAX_HITS}, not {limit}"),
        ));
    }
    if q.film.as_ref().is_some_and(|f| f.chars().count() > 256) {
        return Err(AppError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "film is a film's id, at most 256 characters",
        ));
    }
    let reply: SearchReply = st
        .bus
        .request(
            &endpoints::clips::SEARCH,
            &SearchRequest {
                query: text.to_string(),
                mode: mode as i32,
                limit,
                film_id: q.film.unwrap_or_default(),
                ..Default::default()
            },
        )
        .await?;
    let decoder = &st.hub.decoder;
    Ok(Json(json!({
        "hits": reply.hits.iter().map(|h| json!({
            "clip": h.clip.as_ref().map(|c| decoder.message(c)),
            "score": h.score,
        })).collect::<Vec<_>>(),
        "library_size": reply.library_size,
    })))
}

/// `GET /api/clips/films`: `{films: [{id, title, duration_s, clip_count,
/// scene_count, subtitles}], clip_count, ingest: {…}}` (the latest ingest).
async fn films(State(st): State<AppState>) -> Result<Json<Value>, AppError> {
    let list: FilmList = st
        .bus
        .request(&endpoints::clips::FILMS, &ListFilmsRequest {})
        .await?;
    Ok(Json(st.hub.decoder.message(&list)))
}

/// The longest an ingest asked for by [`reload`] is waited for (logged).
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// `POST /api/clips/reload`: clip-selector ingests the library folder again
/// (new, changed and removed films) and then serves it; no restart. 202 at
/// once (`{"reloading": true}`); the progress is on `GET /api/clips/films`
/// (`ingest.running`, `ingest.progress_done` of `ingest.progress_todo`).
/// 503 when no clip-selector answers.
async fn reload(
    State(st): State<AppState>,
    _: crate::error::NoBody,
) -> Result<(StatusCode, Json<Value>), AppError> {
    // Asked first, so that a missing clip-selector is an answer, not silence.
    let _: FilmList = st
        .bus
        .request(&endpoints::clips::FILMS, &ListFilmsRequest {})
        .await?;
    let bus = st.bus.clone();
    tokio::spawn(async move {
        match bus
            .request_with_timeout::<_, IngestSummary>(
                &endpoints::clips::RELOAD,
                &ReloadRequest {},
                RELOAD_WAIT,
            )
            .await
        {
            Ok(s) => tracing::info!(
                added = s.added,
                updated = s.updated,
                removed = s.removed,
                failed = s.failed,
                "The library was reloaded."
            ),
            Err(e) => tracing::warn!(error = %e, "A reload of the library failed."),
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "reloading": true }))))
}

/// `GET /api/clips/{id}`: `{clip, media_url}`; the film plays from
/// `media_url` (HTTP with Range), the clip is `#t=start_s,end_s` of it.
async fn clip(State(st): State<AppState>, Path(id): Path<String>) -> Result<Json<Value>, AppError> {
    if id.is_empty() || id.len() > 256 {
        return Err(AppError::new(
            StatusCode::BAD_REQUEST,
            "a clip id is 1-256 characters",
        ));
    }
    let reply: GetClipReply = st
        .bus
        .request(&endpoints::clips::GET, &GetClipRequest { clip_id: id })
        .await?;
    Ok(Json(st.hub.decoder.message(&reply)))
}
