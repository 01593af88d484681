//! clip-selector: the film library. Answers `cinema.clips.search`,
//! `cinema.clips.get` and `cinema.clips.films` over NATS (services API, queue
//! group) and serves film media over HTTP with Range support. [`mcp`] offers
//! the same library to MCP clients as tools.

pub mod mcp;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bus::endpoints;
use bus::names;
use bus::service::{self as svc, Reject};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wire::v1::{
    FilmList, GetClipReply, GetClipRequest, IngestSummary, ListFilmsRequest, ReloadRequest,
    SearchHit, SearchReply, SearchRequest,
};

use library::{Library, ingest};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// The library's own settings (root, catalog, cutting, search), flat
    /// keys beside these (`CINEMA_CLIP_SELECTOR_PAD_S`, `CINEMA_LIBRARY`).
    #[serde(flatten)]
    pub catalog: library::Config,
    /// Where the media HTTP server listens.
    pub media_addr: SocketAddr,
    /// Base URL players use to fetch media; empty means `http://{media_addr}`.
    pub media_base_url: String,
    /// Ingest the folder again every this many seconds (0: only at start and
    /// on `cinema.clips.reload`).
    pub rescan_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            catalog: library::Config::default(),
            media_addr: SocketAddr::from(([127, 0, 0, 1], 8766)),
            media_base_url: String::new(),
            rescan_s: 0,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_CLIP_SELECTOR_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = library::Config::SEED_ENV;
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        self.catalog.validate()?;
        if !self.media_base_url.is_empty() && media_url_host(&self.media_base_url).is_none() {
            return Err(format!(
                "media_base_url must be an http:// or https:// URL with a host, as Pis and browsers reach the hub (CINEMA_CLIP_SELECTOR_MEDIA_BASE_URL; CINEMA_MEDIA_BASE_URL under compose), got {:?}",
                self.media_base_url
            ));
        }
        Ok(())
    }
}

/// The host of an `http://` or `https://` URL (`[::1]` keeps its brackets),
/// `None` when `url` is not one.
pub fn media_url_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let host = if host_port.starts_with('[') {
        &host_port[..=host_port.find(']')?]
    } else {
        host_port.split(':').next()?
    };
    let ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._[]:".contains(c));
    ok.then_some(host)
}

/// Whether Pis on other hosts cannot reach `host` (this machine's loopback).
pub fn is_loopback_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified())
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
    #[error("MCP over {transport}: {source}")]
    Mcp {
        transport: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Brings the catalog up to date with the library folder and loads it (on
/// the blocking pool: new films are read with ffmpeg). Thumbnail URLs start
/// with `media_base`.
pub async fn load_library(config: &Config, media_base: &str) -> Result<Library, Error> {
    load_library_with(config, media_base, Arc::new(ingest::Tally::default())).await
}

/// [`load_library`], counting its progress in `tally`.
pub async fn load_library_with(
    config: &Config,
    media_base: &str,
    tally: Arc<ingest::Tally>,
) -> Result<Library, Error> {
    let root = config.catalog.library.clone();
    let index = config.catalog.index();
    let opt = config.catalog.ingest_options();
    let base = media_base.to_string();
    let lib = tokio::task::spawn_blocking(move || {
        Library::ingest(&root, &index, &opt, tally.as_ref(), &base)
    })
    .await
    .map_err(|e| {
        library::Error::Ingest(ingest::Error::Io {
            path: config.catalog.library.clone(),
            source: std::io::Error::other(e),
        })
    })??;
    let s = lib.summary();
    tracing::info!(
        root = %lib.root().display(),
        films = lib.films().count(),
        clips = lib.len(),
        added = s.added,
        updated = s.updated,
        unchanged = s.unchanged,
        removed = s.removed,
        failed = s.failed,
        seconds = s.seconds,
        semantic = lib.is_semantic(),
        "The library is loaded."
    );
    for p in &s.problems {
        tracing::warn!(problem = %p, "A film of the library was skipped or repaired.");
    }
    Ok(lib)
}

/// The library being served. A reload replaces it whole: a request holds the
/// library it started with until it is answered.
#[derive(Clone)]
pub struct Current(tokio::sync::watch::Receiver<Arc<Library>>);

impl Current {
    /// A library that is never replaced (tests, `clip-selector mcp`).
    pub fn fixed(lib: Arc<Library>) -> Current {
        Current(tokio::sync::watch::channel(lib).1)
    }

    pub fn get(&self) -> Arc<Library> {
        self.0.borrow().clone()
    }
}

/// Re-ingests the library folder and swaps the new library in; one reload at
/// a time (a request that arrives during one waits and then finds little to
/// do).
struct Reloader {
    config: Config,
    base: String,
    tx: tokio::sync::watch::Sender<Arc<Library>>,
    /// Held while an ingest runs.
    running: tokio::sync::Mutex<()>,
    tally: Arc<ingest::Tally>,
}

impl Reloader {
    async fn reload(&self) -> Result<IngestSummary, Error> {
        let _one = self.running.lock().await;
        let lib = load_library_with(&self.config, &self.base, self.tally.clone()).await?;
        let summary = lib.summary().clone();
        self.tx.send_replace(Arc::new(lib));
        self.tally.set_loaded();
        Ok(summary)
    }

    /// Serves the catalog as the last ingest left it, if it holds films,
    /// until the first ingest since start ends.
    async fn serve_stored(&self) {
        let root = self.config.catalog.library.clone();
        let index = self.config.catalog.index();
        let opt = self.config.catalog.ingest_options();
        let base = self.base.clone();
        let stored =
            tokio::task::spawn_blocking(move || Library::stored(&root, &index, &opt, &base)).await;
        match stored {
            Ok(Ok(Some(lib))) => {
                tracing::info!(
                    films = lib.films().count(),
                    clips = lib.len(),
                    "Serving the stored catalog while the library is ingested again."
                );
                self.tx.send_replace(Arc::new(lib));
                self.tally.set_loaded();
            }
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "The stored catalog cannot be served; waiting for the ingest.")
            }
            Err(e) => tracing::warn!(error = %e, "Reading the stored catalog failed."),
        }
    }

    /// Refuses what needs the library until the first ingest since start
    /// has loaded one.
    fn loaded(&self) -> Result<(), Reject> {
        if self.tally.is_loaded() {
            return Ok(());
        }
        let (done, todo) = self.tally.counts();
        Err(Reject::unavailable(format!(
            "the library is being ingested ({done} of {todo} films); it answers once loaded"
        )))
    }

    fn is_running(&self) -> bool {
        self.running.try_lock().is_err()
    }
}

/// Loads the library, serves NATS requests and media until `shutdown`.
/// `cinema.clips.reload` (and every `rescan_s`, when set) ingests the folder
/// again and serves the new library.
pub async fn run(config: Config, bus: bus::Bus, shutdown: CancellationToken) -> Result<(), Error> {
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
    // A folder that cannot be read is a configuration error: said now, in
    // one line, before anything is served.
    std::fs::read_dir(&config.catalog.library).map_err(|source| {
        library::Error::Ingest(ingest::Error::Io {
            path: config.catalog.library.clone(),
            source,
        })
    })?;
    // The library is served from the stored catalog (if any) at once, then
    // from the end of the first ingest; with neither the service answers
    // (films: the progress) and refuses searches.
    let empty = Library::from_clips(config.catalog.library.clone(), Vec::new(), Vec::new(), None)?;
    let (tx, rx) = tokio::sync::watch::channel(Arc::new(empty));
    let current = Current(rx);
    tracing::info!(%base, "Serving media.");
    if media_url_host(&base).is_some_and(is_loopback_host) {
        tracing::warn!(
            %base,
            "Films are offered at a loopback address, which Pis on other hosts cannot reach: set CINEMA_CLIP_SELECTOR_MEDIA_BASE_URL (CINEMA_MEDIA_BASE_URL under compose) to the hub's address."
        );
    }
    let http = axum::serve(listener, media_router_of(current.clone()))
        .with_graceful_shutdown(shutdown.clone().cancelled_owned());

    let service = svc::start(
        bus.client(),
        names::service::CLIP_SELECTOR,
        "Film library: search, clips, films",
    )
    .await?;
    let search = svc::endpoint(&service, &endpoints::clips::SEARCH).await?;
    let get = svc::endpoint(&service, &endpoints::clips::GET).await?;
    let films = svc::endpoint(&service, &endpoints::clips::FILMS).await?;
    let reload = svc::endpoint(&service, &endpoints::clips::RELOAD).await?;

    let rescan = Duration::from_secs(config.rescan_s);
    let reloader = Arc::new(Reloader {
        config,
        base: base.clone(),
        tx,
        running: tokio::sync::Mutex::new(()),
        tally: Arc::new(ingest::Tally::default()),
    });
    // The first ingest: its failure ends the service (nothing to serve).
    let first = {
        let reloader = reloader.clone();
        async move {
            reloader.serve_stored().await;
            let summary = reloader.reload().await?;
            tracing::info!(films = summary.films, "The library is served.");
            std::future::pending::<Result<(), Error>>().await
        }
    };
    if !rescan.is_zero() {
        let reloader = reloader.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(tokio::time::Instant::now() + rescan, rescan);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    _ = every.tick() => {}
                }
                if let Err(e) = reloader.reload().await {
                    tracing::warn!(error = %e, "The periodic rescan of the library failed; the library served stays as it was.");
                }
            }
        });
    }
    // Where media is offered, for the dashboard's Pis page.
    let media = Arc::new(FilmList {
        media_base_url: base.clone(),
        media_loopback: media_url_host(&base).is_some_and(is_loopback_host),
        host: std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
        ..FilmList::default()
    });
    let base = Arc::new(base);
    let (c_search, c_get, c_films) = (current.clone(), current.clone(), current);
    let (r_search, r_get, r_films) = (reloader.clone(), reloader.clone(), reloader.clone());
    tokio::select! {
        r = http => r.map_err(|source| Error::Http { addr, source })?,
        r = first => r?,
        () = async {
            tokio::join!(
                svc::serve(search, shutdown.clone(), 16, |req: SearchRequest| {
                    let lib = c_search.get();
                    let loaded = r_search.loaded();
                    async move {
                        loaded?;
                        handle_search(&lib, req)
                    }
                }),
                svc::serve(get, shutdown.clone(), 16, |req: GetClipRequest| {
                    let lib = c_get.get();
                    let base = base.clone();
                    let loaded = r_get.loaded();
                    async move {
                        loaded?;
                        let clip = lib.clip(&req.clip_id).ok_or_else(|| {
                            Reject::not_found(format!("unknown clip id {:?}", req.clip_id))
                        })?;
                        Ok(GetClipReply {
                            media_url: format!("{base}/media/{}", clip.film_id),
                            film_path: lib.film_rel_path(&clip.film_id).unwrap_or_default(),
                            clip: Some(clip.clone()),
                        })
                    }
                }),
                svc::serve(films, shutdown.clone(), 4, |_: ListFilmsRequest| {
                    let lib = c_films.get();
                    let running = r_films.is_running();
                    let loading = !r_films.tally.is_loaded();
                    let (done, todo) = r_films.tally.counts();
                    let media = media.clone();
                    async move {
                        Ok(FilmList {
                            films: lib.films().cloned().collect(),
                            ingest: Some(IngestSummary {
                                running,
                                progress_done: if running { done } else { 0 },
                                progress_todo: if running { todo } else { 0 },
                                ..lib.summary().clone()
                            }),
                            loading,
                            clip_count: lib.len() as u32,
                            ..(*media).clone()
                        })
                    }
                }),
                svc::serve(reload, shutdown.clone(), 2, |_: ReloadRequest| {
                    let reloader = reloader.clone();
                    async move {
                        reloader.reload().await.map_err(|e| {
                            tracing::warn!(error = %e, "A reload of the library failed; the library served stays as it was.");
                            Reject::internal(e.to_string())
                        })
                    }
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
        .search_hits(&req)
        .map_err(|e| Reject::internal(e.to_string()))?
        .into_iter()
        .map(|found| SearchHit {
            clip: Some(found.clip),
            score: found.score,
            reason: found.reason,
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
    media_router_of(Current::fixed(lib))
}

/// The media routes over whichever library is current.
pub fn media_router_of(current: Current) -> Router {
    Router::new()
        .route("/media/{film_id}", axum::routing::get(media))
        .route("/thumbnails/{name}", axum::routing::get(thumbnail))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .with_state(current)
}

/// `GET /thumbnails/{clip_id}.jpg`: a clip's keyframe picture.
async fn thumbnail(
    State(current): State<Current>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let id = name.strip_suffix(".jpg").unwrap_or(&name);
    let Some(path) = current.get().thumbnail_path(id) else {
        return (StatusCode::NOT_FOUND, format!("no thumbnail {name:?}")).into_response();
    };
    serve_file(path, req).await
}

async fn media(
    State(current): State<Current>,
    Path(film_id): Path<String>,
    req: Request,
) -> Response {
    let Some(path) = current
        .get()
        .film_path(&film_id)
        .map(std::path::Path::to_path_buf)
    else {
        return (
            StatusCode::NOT_FOUND,
            format!("unknown film id {film_id:?}"),
        )
            .into_response();
    };
    serve_file(path, req).await
}

/// A file of the library (a film, a thumbnail) with Range support; the path
/// always comes from the index.
async fn serve_file(path: impl AsRef<std::path::Path>, req: Request) -> Response {
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
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn media_urls_and_loopback_hosts() {
        for (url, host, loopback) in [
            ("http://hub.lan:8766", Some("hub.lan"), false),
            ("https://films.example/base/", Some("films.example"), false),
            ("http://localhost:8766", Some("localhost"), true),
            ("http://127.0.0.1:8766", Some("127.0.0.1"), true),
            ("http://0.0.0.0:8766", Some("0.0.0.0"), true),
            ("http://[::1]:8766", Some("[::1]"), true),
            ("http://192.168.1.20:8766", Some("192.168.1.20"), false),
            ("http://user:pw@hub:1", Some("hub"), false),
            ("hub.lan:8766", None, false),
            ("ftp://hub", None, false),
            ("http://", None, false),
            ("http://bad host/", None, false),
        ] {
            assert_eq!(media_url_host(url), host, "{url}");
            assert_eq!(host.is_some_and(is_loopback_host), loopback, "{url}");
        }
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure type
    fn the_embedding_model_comes_from_the_environment() {
        figment::Jail::expect_with(|jail| {
            jail.clear_env();
            let args = plumbing::CommonArgs::default();
            let config: Config = plumbing::config::load(&args).expect("defaults");
            assert_eq!(config.catalog.embedding_model, None);
            jail.set_env("CINEMA_EMBEDDING_MODEL", "/models/minilm");
            let config: Config = plumbing::config::load(&args).expect("seed name");
            assert_eq!(
                config.catalog.embedding_model,
                Some(PathBuf::from("/models/minilm"))
            );
            jail.set_env("CINEMA_CLIP_SELECTOR_EMBEDDING_MODEL", "/other");
            let config: Config = plumbing::config::load(&args).expect("own name");
            assert_eq!(
                config.catalog.embedding_model,
                Some(PathBuf::from("/other"))
            );
            // The library's keys are flat beside the service's own.
            jail.set_env("CINEMA_CLIP_SELECTOR_PAD_S", "1");
            jail.set_env("CINEMA_CLIP_SELECTOR_SCENES", "false");
            jail.set_env("CINEMA_ENCODER_SIMD", "avx2");
            jail.set_env("CINEMA_CLIP_SELECTOR_RESCAN_S", "30");
            let config: Config = plumbing::config::load(&args).expect("flat keys");
            assert_eq!(config.catalog.pad_s, 1.0);
            assert!(!config.catalog.scenes);
            assert_eq!(config.catalog.encoder_simd, encoder::SimdCap::Avx2);
            assert_eq!(config.rescan_s, 30);
            jail.set_env("CINEMA_ENCODER_SIMD", "sse9");
            let bad = plumbing::config::load::<Config>(&args).expect_err("unknown cap");
            assert!(bad.to_string().contains("sse9"), "{bad}");
            Ok(())
        });
    }
}
