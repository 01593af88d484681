//! clip-selector as a service over a real library: media and thumbnails
//! served by id only, a reload picking up films added while running, and a
//! first ingest that does not keep it from answering.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use library::ingest;
use library::{IndexDir, IngestOptions, Library};
use wire::v1::{SearchMode, SearchRequest};

#[tokio::test]
async fn media_and_thumbnails_are_served_by_id_only() {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use tower::ServiceExt;

    let dir = testkit::film_library(&[("hall", &["Welcome to the hall."])]);
    let lib = Library::ingest(
        dir.path(),
        &IndexDir::inside(dir.path()),
        &IngestOptions::default(),
        &ingest::LogProgress,
        "http://m",
    )
    .unwrap();
    let clip = lib.clips()[0].clone();
    assert_eq!(
        lib.film_rel_path(&clip.film_id).as_deref(),
        Some("hall.mp4")
    );
    let app = clip_selector::media_router(std::sync::Arc::new(lib));
    let get = |uri: String, range: Option<&'static str>| {
        let app = app.clone();
        async move {
            let mut req = Request::get(uri);
            if let Some(r) = range {
                req = req.header(header::RANGE, r);
            }
            let resp = app.oneshot(req.body(Body::empty()).unwrap()).await.unwrap();
            let status = resp.status();
            let kind = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string());
            let body = axum::body::to_bytes(resp.into_body(), 1 << 26)
                .await
                .unwrap();
            (status, kind, body)
        }
    };
    let (status, kind, body) = get(format!("/thumbnails/{}.jpg", clip.id), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(kind.as_deref(), Some("image/jpeg"));
    assert_eq!(&body[..2], &[0xff, 0xd8]);
    let (status, _, body) = get(format!("/media/{}", clip.film_id), Some("bytes=0-99")).await;
    assert_eq!(status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(body.len(), 100);
    for uri in [
        "/thumbnails/nope.jpg",
        "/thumbnails/..%2F..%2Fetc%2Fpasswd",
        "/media/..%2Fhall.mp4",
        "/media/hall.mp4",
    ] {
        let (status, _, _) = get(uri.to_string(), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
    }
}

#[tokio::test]
async fn a_reload_serves_films_added_while_running() {
    use wire::v1::{FilmList, IngestSummary, ListFilmsRequest, ReloadRequest, SearchReply};

    let nats = testkit::NatsServer::start();
    let bus = nats.bus("reload-test").await;
    let dir = testkit::film_library(&[("first", &["Hello from the first film."])]);
    let later = testkit::film_library(&[("second", &["A penguin walks into the bar."])]);
    let config = clip_selector::Config {
        nats_url: nats.url(),
        catalog: library::Config {
            library: dir.path().to_path_buf(),
            ..Default::default()
        },
        media_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(clip_selector::run(config, bus.clone(), stop.clone()));
    let penguin = async || -> Option<SearchReply> {
        bus.request(
            &bus::endpoints::clips::SEARCH,
            &SearchRequest {
                query: "penguin".into(),
                mode: SearchMode::Description as i32,
                limit: 3,
                ..Default::default()
            },
        )
        .await
        .ok()
    };
    let before =
        testkit::eventually(std::time::Duration::from_secs(60), "clip-selector", penguin).await;
    assert!(before.hits.is_empty());

    for ext in ["mp4", "srt"] {
        std::fs::copy(
            later.path().join(format!("second.{ext}")),
            dir.path().join(format!("second.{ext}")),
        )
        .unwrap();
    }
    let summary: IngestSummary = bus
        .request_with_timeout(
            &bus::endpoints::clips::RELOAD,
            &ReloadRequest {},
            std::time::Duration::from_secs(60),
        )
        .await
        .unwrap();
    assert_eq!((summary.added, summary.unchanged), (1, 1), "{summary:?}");
    let after = penguin().await.unwrap();
    assert_eq!(
        after.hits[0].clip.as_ref().unwrap().caption,
        "A penguin walks into the bar."
    );
    let films: FilmList = bus
        .request(&bus::endpoints::clips::FILMS, &ListFilmsRequest {})
        .await
        .unwrap();
    assert_eq!(films.films.len(), 2);
    let ingest = films.ingest.unwrap();
    assert!(!ingest.running && ingest.added == 1, "{ingest:?}");
    stop.cancel();
    service.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_first_ingest_of_a_large_library_does_not_keep_the_service_from_answering() {
    use wire::v1::{FilmList, ListFilmsRequest, SearchReply};

    let nats = testkit::NatsServer::start();
    let bus = nats.bus("first-ingest-test").await;
    // 30 films that each need ffmpeg's work (scenes, thumbnails).
    let one = testkit::film_library(&[("reel", &["A penguin walks into the bar."])]);
    let dir = tempfile::tempdir().unwrap();
    const FILMS: u32 = 30;
    for i in 0..FILMS {
        for ext in ["mp4", "srt"] {
            std::fs::copy(
                one.path().join(format!("reel.{ext}")),
                dir.path().join(format!("reel-{i:02}.{ext}")),
            )
            .unwrap();
        }
    }
    let config = clip_selector::Config {
        nats_url: nats.url(),
        catalog: library::Config {
            library: dir.path().to_path_buf(),
            ..Default::default()
        },
        media_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(clip_selector::run(config, bus.clone(), stop.clone()));
    let films = async || -> Option<FilmList> {
        bus.request(&bus::endpoints::clips::FILMS, &ListFilmsRequest {})
            .await
            .ok()
    };
    let search = async || {
        bus.request::<_, SearchReply>(
            &bus::endpoints::clips::SEARCH,
            &SearchRequest {
                query: "penguin".into(),
                mode: SearchMode::Description as i32,
                limit: 3,
                ..Default::default()
            },
        )
        .await
    };

    // It answers at once, loading; searches are refused with the reason,
    // not left to time out.
    let first = testkit::eventually(
        Duration::from_secs(30),
        "clip-selector to answer",
        async || films().await,
    )
    .await;
    assert!(first.loading, "{first:?}");
    match search().await {
        Err(bus::Error::Remote { code: 503, message }) => {
            assert!(message.contains("being ingested"), "{message}")
        }
        other => panic!("a search during the first ingest: {other:?}"),
    }
    // The progress (films done of the 30) moves, then the library is served.
    let mut seen = Vec::new();
    let done = testkit::eventually(
        Duration::from_secs(600),
        "the first ingest to end",
        async || {
            let f = films().await?;
            if f.loading {
                let ingest = f.ingest?;
                if ingest.running {
                    seen.push((ingest.progress_done, ingest.progress_todo));
                }
                None
            } else {
                Some(f)
            }
        },
    )
    .await;
    assert!(
        seen.iter().any(|&(d, t)| t == FILMS && d > 0 && d < FILMS)
            && seen.windows(2).all(|w| w[0].0 <= w[1].0 || w[1].1 == 0),
        "{seen:?}"
    );
    assert_eq!(done.films.len(), FILMS as usize);
    let ingest = done.ingest.unwrap();
    assert!(!ingest.running && ingest.added == FILMS, "{ingest:?}");
    assert!(!search().await.unwrap().hits.is_empty());
    stop.cancel();
    service.await.unwrap().unwrap();
}

/// Restarted over a library it has ingested before, clip-selector answers
/// searches from the stored catalog at once, while it ingests the folder
/// again (here: films added while it was down).
#[tokio::test]
async fn a_restart_serves_the_stored_catalog_while_it_ingests_again() {
    use wire::v1::{FilmList, ListFilmsRequest, SearchReply};

    let nats = testkit::NatsServer::start();
    let bus = nats.bus("restart-test").await;
    let dir = testkit::film_library(&[("reel", &["A penguin walks into the bar."])]);
    let more = testkit::film_library(&[("other", &["The tide comes in at noon."])]);
    let config = clip_selector::Config {
        nats_url: nats.url(),
        catalog: library::Config {
            library: dir.path().to_path_buf(),
            ..Default::default()
        },
        media_addr: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    };
    let films = async || -> Option<FilmList> {
        bus.request(&bus::endpoints::clips::FILMS, &ListFilmsRequest {})
            .await
            .ok()
    };
    let penguin = async || {
        bus.request::<_, SearchReply>(
            &bus::endpoints::clips::SEARCH,
            &SearchRequest {
                query: "penguin".into(),
                mode: SearchMode::Description as i32,
                limit: 3,
                ..Default::default()
            },
        )
        .await
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(clip_selector::run(
        config.clone(),
        bus.clone(),
        stop.clone(),
    ));
    testkit::eventually(Duration::from_secs(120), "the first ingest", async || {
        films().await.filter(|f| !f.loading).map(|_| ())
    })
    .await;
    stop.cancel();
    service.await.unwrap().unwrap();

    // Down: twenty films arrive, each needing ffmpeg's work.
    for i in 0..20 {
        for ext in ["mp4", "srt"] {
            std::fs::copy(
                more.path().join(format!("other.{ext}")),
                dir.path().join(format!("other-{i:02}.{ext}")),
            )
            .unwrap();
        }
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let service = tokio::spawn(clip_selector::run(config, bus.clone(), stop.clone()));
    let during = testkit::eventually(
        Duration::from_secs(120),
        "the stored catalog served while the folder is ingested again",
        async || {
            let f = films().await?;
            let running = f.ingest.as_ref().is_some_and(|i| i.running);
            (running && !f.loading).then_some(f)
        },
    )
    .await;
    let hits = penguin().await.expect("a search while ingesting");
    assert_eq!(
        hits.hits[0].clip.as_ref().unwrap().caption,
        "A penguin walks into the bar.",
        "{during:?}"
    );
    // Then the new films are served too.
    let after = testkit::eventually(Duration::from_secs(600), "the ingest to end", async || {
        let f = films().await?;
        (!f.ingest.as_ref().is_some_and(|i| i.running) && f.films.len() == 21).then_some(f)
    })
    .await;
    assert!(!after.loading);
    stop.cancel();
    service.await.unwrap().unwrap();
}
