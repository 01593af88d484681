//! clip-selector: the film library. Answers `cinema.clips.search`,
//! `cinema.clips.get` and `cinema.clips.films` over NATS (services API, queue
//! group) and serves film media over HTTP with Range support.

pub mod embed;
pub mod fusion;
pub mod library;
pub mod semantic;
pub mod srt;
pub mod vectors;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bus::service::{self as svc, Reject};
use bus::{names, subjects};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wire::v1::{
    FilmList, GetClipReply, GetClipRequest, ListFilmsRequest, SearchHit, SearchReply, SearchRequest,
};

pub use library::{CutOptions, Library};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// Library root: a folder of films with `.srt` sidecars (`CINEMA_LIBRARY`).
    pub library: PathBuf,
    /// Where the media HTTP server listens.
    pub media_addr: SocketAddr,
    /// Base URL players use to fetch media; empty means `http://{media_addr}`.
    pub media_base_url: String,
    pub pad_s: f64,
    pub min_clip_s: f64,
    /// The sentence-embedding model folder (`CINEMA_EMBEDDING_MODEL`;
    /// `scripts/setup` fetches it). Unset or unusable: lexical search only.
    pub embedding_model: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            library: PathBuf::from("library"),
            media_addr: SocketAddr::from(([127, 0, 0, 1], 8766)),
            media_base_url: String::new(),
            pad_s: 0.3,
            min_clip_s: 1.0,
            embedding_model: None,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_CLIP_SELECTOR_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_LIBRARY", "library"),
        ("CINEMA_EMBEDDING_MODEL", "embedding_model"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        if !(0.0..=5.0).contains(&self.pad_s) {
            return Err(format!(
                "pad_s must be between 0 and 5 seconds, got {}",
                self.pad_s
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Library(#[from] library::Error),
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("media server on {addr}: {source}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Loads the library, serves NATS requests and media until `shutdown`.
pub async fn run(config: Config, bus: bus::Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let opt = CutOptions {
        pad_s: config.pad_s,
        min_len_s: config.min_clip_s,
    };
    let root = config.library.clone();
    let model = config.embedding_model.clone();
    let lib = tokio::task::spawn_blocking(move || Library::open(&root, opt, model.as_deref()))
        .await
        .map_err(|e| library::Error::Io {
            path: config.library.clone(),
            source: std::io::Error::other(e),
        })??;
    tracing::info!(
        root = %lib.root().display(),
        films = lib.films().count(),
        clips = lib.len(),
        semantic = lib.is_semantic(),
        "The library is loaded."
    );
    let lib = Arc::new(lib);

    let listener = tokio::net::TcpListener::bind(config.media_addr)
        .await
        .map_err(|source| Error::Http {
            addr: config.media_addr,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| Error::Http {
        addr: config.media_addr,
        source,
    })?;
    let base = if config.media_base_url.is_empty() {
        format!("http://{addr}")
    } else {
        config.media_base_url.trim_end_matches('/').to_string()
    };
    tracing::info!(%base, "Serving media.");
    let http = axum::serve(listener, media_router(lib.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    let service = svc::start(
        bus.client(),
        names::service::CLIP_SELECTOR,
        "Film library: search, clips, films",
    )
    .await?;
    let search = svc::endpoint(&service, "search", subjects::clips::SEARCH).await?;
    let get = svc::endpoint(&service, "get", subjects::clips::GET).await?;
    let films = svc::endpoint(&service, "films", subjects::clips::FILMS).await?;

    let lib_search = lib.clone();
    let lib_get = lib.clone();
    let base = Arc::new(base);
    tokio::select! {
        r = http => r.map_err(|source| Error::Http { addr, source })?,
        () = async {
            tokio::join!(
                svc::serve(search, shutdown.clone(), 16, |req: SearchRequest| {
                    let lib = lib_search.clone();
                    async move { handle_search(&lib, req) }
                }),
                svc::serve(get, shutdown.clone(), 16, |req: GetClipRequest| {
                    let lib = lib_get.clone();
                    let base = base.clone();
                    async move {
                        let clip = lib.clip(&req.clip_id).ok_or_else(|| {
                            Reject::not_found(format!("unknown clip id {:?}", req.clip_id))
                        })?;
                        Ok(GetClipReply {
                            media_url: format!("{base}/media/{}", clip.film_id),
                            clip: Some(clip.clone()),
                        })
                    }
                }),
                svc::serve(films, shutdown.clone(), 4, |_: ListFilmsRequest| {
                    let lib = lib.clone();
                    async move { Ok(FilmList { films: lib.films().cloned().collect() }) }
                }),
            );
        } => {}
    }
    let _ = service.stop().await;
    Ok(())
}

fn handle_search(lib: &Library, req: SearchRequest) -> Result<SearchReply, Reject> {
    if req.query.len() > 2000 {
        return Err(Reject::bad_request("query is longer than 2000 bytes"));
    }
    let hits = lib
        .search(&req)
        .map_err(|e| Reject::internal(e.to_string()))?
        .into_iter()
        .map(|(clip, score)| SearchHit {
            clip: Some(clip),
            score,
        })
        .collect();
    Ok(SearchReply {
        hits,
        library_size: lib.len() as u32,
    })
}

/// `GET /media/{film_id}`: the film's file, with Range support. The path comes
/// from the index, so nothing outside the library root can be named.
pub fn media_router(lib: Arc<Library>) -> Router {
    Router::new()
        .route("/media/{film_id}", axum::routing::get(media))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(lib)
}

async fn media(
    State(lib): State<Arc<Library>>,
    Path(film_id): Path<String>,
    req: Request,
) -> Response {
    let Some(path) = lib.film_path(&film_id) else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown film id {film_id:?}"),
        )
            .into_response();
    };
    match tower_http::services::ServeFile::new(path)
        .oneshot(req)
        .await
    {
        Ok(resp) => resp.into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn the_embedding_model_comes_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let args = plumbing::CommonArgs::default();
            let config: Config = plumbing::config::load(&args).expect("defaults");
            assert_eq!(config.embedding_model, None);
            jail.set_env("CINEMA_EMBEDDING_MODEL", "/models/minilm");
            let config: Config = plumbing::config::load(&args).expect("seed name");
            assert_eq!(
                config.embedding_model,
                Some(PathBuf::from("/models/minilm"))
            );
            jail.set_env("CINEMA_CLIP_SELECTOR_EMBEDDING_MODEL", "/other");
            let config: Config = plumbing::config::load(&args).expect("own name");
            assert_eq!(config.embedding_model, Some(PathBuf::from("/other")));
            Ok(())
        });
    }
}
