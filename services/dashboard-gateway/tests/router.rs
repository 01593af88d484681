//! The API as a router (no sockets): auth, validation and error shapes.
#![allow(clippy::unwrap_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use dashboard_gateway::{AppState, Config, app};
use tower::ServiceExt;

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, serde_json::Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null),
    )
}

fn post(uri: &str, body: &str, token: Option<&str>) -> Request<Body> {
    let mut b = Request::post(uri).header("content-type", "application/json");
    if let Some(t) = token {
        b = b.header("authorization", format!("Bearer {t}"));
    }
    b.body(Body::from(body.to_string())).unwrap()
}

#[tokio::test]
async fn token_guards_every_mutating_endpoint() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("gateway-test").await;
    let config = Config {
        api_token: "s3cret".into(),
        ..Config::default()
    };
    let router = app(AppState::new(bus, &config));

    for uri in [
        "/api/connect",
        "/api/sessions/abc/say",
        "/api/sessions/abc/end",
        "/update-status",
    ] {
        let (code, body) = call(&router, post(uri, "{}", None)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"));
        let (code, _) = call(&router, post(uri, "{}", Some("wrong"))).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
    }
    // With the token the request reaches its handler: no session → 404, and
    // no room-manager on this bus → 503 with a message.
    let (code, body) = call(
        &router,
        post("/api/sessions/abc/say", r#"{"text":"hi"}"#, Some("s3cret")),
    )
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no service answers"),
        "{body}"
    );
    // Reads stay open.
    let (code, _) = call(
        &router,
        Request::get("/health").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(
        code,
        StatusCode::SERVICE_UNAVAILABLE,
        "services are missing on this bus"
    );
}

#[tokio::test]
async fn bad_bodies_get_4xx_with_a_message() {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("gateway-test").await;
    let router = app(AppState::new(
        bus,
        &Config {
            body_limit: 1024,
            ..Config::default()
        },
    ));
    let cases = [
        ("/api/sessions/abc/say", "{oops", StatusCode::BAD_REQUEST),
        (
            "/api/sessions/abc/say",
            r#"{"text": 5}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/sessions/abc/say",
            r#"{"text": "hi", "extra": 1}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/sessions/abc/say",
            r#"{"text": ""}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/api/sessions/a.b/say",
            r#"{"text": "hi"}"#,
            StatusCode::BAD_REQUEST,
        ),
        ("/api/connect", r#"[1,2]"#, StatusCode::UNPROCESSABLE_ENTITY),
        ("/api/sessions/a*/end", "", StatusCode::BAD_REQUEST),
        (
            "/update-status",
            r#"{"status": "x"}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/update-status",
            r#"{"identifier": "abc", "status": " "}"#,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            "/update-status",
            r#"{"identifier": "a.b", "status": "ready"}"#,
            StatusCode::BAD_REQUEST,
        ),
    ];
    for (uri, body, want) in cases {
        let (code, json) = call(&router, post(uri, body, None)).await;
        assert_eq!(code, want, "{uri} {body}: {json}");
        assert!(
            !json["error"].as_str().unwrap_or_default().is_empty(),
            "{uri} {body}: {json}"
        );
    }
    let long = format!(r#"{{"text": "{}"}}"#, "a".repeat(2000));
    let (code, _) = call(&router, post("/api/sessions/abc/say", &long, None)).await;
    assert_eq!(code, StatusCode::PAYLOAD_TOO_LARGE);
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// A router over a bus with the streams and buckets but no services.
async fn bare(config: Config) -> (testkit::NatsServer, bus::Bus, axum::Router, AppState) {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("gateway-test").await;
    bus.ensure_topology().await.unwrap();
    let state = AppState::new(bus.clone(), &config);
    (nats, bus, app(state.clone()), state)
}

#[tokio::test]
async fn streams_and_new_mutations_need_the_token() {
    let (_nats, _bus, router, _) = bare(Config {
        api_token: "s3cret".into(),
        ..Config::default()
    })
    .await;
    let (code, body) = call(
        &router,
        post(
            "/api/pis/test-pi/audio_input",
            r#"{"audio_input":"none"}"#,
            None,
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED, "{body}");
    // The query token is for streams only.
    let (code, _) = call(&router, post("/api/connect?token=s3cret", "{}", None)).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    for uri in ["/api/events", "/api/audio", "/api/events?token=wrong"] {
        let (code, body) = call(&router, get(uri)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    // With the token (query or header) the stream opens.
    for req in [
        get("/api/events?token=s3cret"),
        get("/api/audio?token=s3cret&session=abc"),
        Request::get("/api/events")
            .header("authorization", "Bearer s3cret")
            .body(Body::empty())
            .unwrap(),
    ] {
        let resp = router.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
    }
    // The dashboard's own files, what it needs first and the API document
    // stay open.
    for uri in [
        "/",
        "/app.js",
        "/app.css",
        "/mic-worklet.js",
        "/api/info",
        "/api/openapi.json",
    ] {
        let resp = router.clone().oneshot(get(uri)).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
    }
    let (_, info) = call(&router, get("/api/info")).await;
    assert_eq!(info["auth"], true);
}

fn with(req: Request<Body>, headers: &[(&str, &str)]) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    for (k, v) in headers {
        parts.headers.insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    Request::from_parts(parts, body)
}

/// What visitors said, the sessions, the Pis, the metrics and the library
/// need the token once one is set; a read-only token opens the reads and
/// the live streams, never a change nor the microphone socket.
#[tokio::test]
async fn with_a_token_everything_that_shows_anything_needs_it() {
    let (_nats, _bus, router, _) = bare(Config {
        api_token: "s3cret".into(),
        api_read_token: "wall".into(),
        ..Config::default()
    })
    .await;
    let reads = [
        "/conversation-status/abc",
        "/api/sessions",
        "/api/sessions/abc",
        "/api/pis",
        "/api/pis/test-pi/devices",
        "/metrics",
        "/api/clips/search?q=hello",
        "/api/clips/films",
        "/api/clips/abc",
        "/api/health/services",
    ];
    for uri in reads {
        let (code, body) = call(&router, get(uri)).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}: {body}");
        assert!(body["error"].as_str().unwrap().contains("Bearer"), "{body}");
        let (code, _) = call(&router, with(get(uri), &[("authorization", "Bearer nope")])).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
        // The query token is for streams only.
        let sep = if uri.contains('?') { '&' } else { '?' };
        let (code, _) = call(&router, get(&format!("{uri}{sep}token=s3cret"))).await;
        assert_eq!(code, StatusCode::UNAUTHORIZED, "{uri}");
        for token in ["s3cret", "wall"] {
            let (code, body) = call(
                &router,
                with(get(uri), &[("authorization", &format!("Bearer {token}"))]),
            )
            .await;
            assert_ne!(code, StatusCode::UNAUTHORIZED, "{uri} with {token}: {body}");
        }
    }
    // The read-only token: streams yes; changes and the talk socket no.
    let resp = router
        .clone()
        .oneshot(get("/api/events?token=wall"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let (code, _) = call(
        &router,
        post("/api/sessions/abc/say", r#"{"text":"hi"}"#, Some("wall")),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = call(&router, get("/api/sessions/abc/talk?token=wall")).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, _) = call(
        &router,
        with(
            Request::delete("/api/cleanup-old-sessions")
                .body(Body::empty())
                .unwrap(),
            &[("authorization", "Bearer wall")],
        ),
    )
    .await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    // /health stays open for compose and monitors.
    let (code, _) = call(&router, get("/health")).await;
    assert_eq!(
        code,
        StatusCode::SERVICE_UNAVAILABLE,
        "open, services missing"
    );
}

/// Without a token the gateway answers for its own names only (a page on
/// another site that rebinds its DNS name to 127.0.0.1 reaches nothing);
/// writes must say JSON and come from no other site.
#[tokio::test]
async fn other_sites_reach_nothing() {
    let (_nats, _bus, router, _) = bare(Config::default()).await;
    for host in [
        "localhost:8765",
        "127.0.0.1:8765",
        "[::1]:8765",
        "LOCALHOST",
    ] {
        let (code, body) = call(&router, with(get("/api/sessions"), &[("host", host)])).await;
        assert_ne!(code, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
    }
    for host in [
        "evil.example:8765",
        "evil.example",
        "localhost.evil.example",
        "10.1.2.3:8765",
    ] {
        for req in [
            get("/api/sessions"),
            get("/conversation-status/abc"),
            post("/api/connect", "{}", None),
        ] {
            let (code, body) = call(&router, with(req, &[("host", host)])).await;
            assert_eq!(code, StatusCode::MISDIRECTED_REQUEST, "{host}: {body}");
            assert!(
                body["error"].as_str().unwrap().contains("ALLOWED_HOSTS"),
                "{body}"
            );
        }
    }
    // A configured name is the gateway's; with a token and no names the
    // Host is not checked (the token keeps other sites out).
    let (_n2, _b2, named, _) = bare(Config {
        allowed_hosts: vec!["tv.example".into()],
        ..Config::default()
    })
    .await;
    let (code, _) = call(
        &named,
        with(get("/api/info"), &[("host", "tv.example:8765")]),
    )
    .await;
    assert_eq!(code, StatusCode::OK);
    let (code, _) = call(&named, with(get("/api/info"), &[("host", "evil.example")])).await;
    assert_eq!(code, StatusCode::MISDIRECTED_REQUEST);
    let (_n3, _b3, tokened, _) = bare(Config {
        api_token: "s3cret".into(),
        ..Config::default()
    })
    .await;
    let (code, _) = call(
        &tokened,
        with(get("/api/info"), &[("host", "10.1.2.3:8765")]),
    )
    .await;
    assert_eq!(code, StatusCode::OK);

    // A POST must say JSON: a form or a no-cors fetch from another site
    // cannot.
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
    ] {
        let mut b = Request::post("/api/connect");
        if let Some(t) = content_type {
            b = b.header("content-type", t);
        }
        let (code, body) = call(&router, b.body(Body::from("{}")).unwrap()).await;
        assert_eq!(
            code,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "{content_type:?}: {body}"
        );
        assert!(body["error"].as_str().unwrap().contains("application/json"));
    }
    // A change from a page of another origin is refused; the gateway's own
    // origin passes (here to the missing room-manager).
    let (code, body) = call(
        &router,
        with(
            post("/api/sessions/abc/end", "{}", None),
            &[
                ("host", "localhost:8765"),
                ("origin", "http://evil.example"),
            ],
        ),
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN, "{body}");
    let (code, body) = call(
        &router,
        with(
            post("/api/sessions/abc/end", "{}", None),
            &[
                ("host", "localhost:8765"),
                ("origin", "http://localhost:8765"),
            ],
        ),
    )
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // And a 5xx says what is wrong, never a service's internal text.
    assert!(
        !body["error"].as_str().unwrap().contains("cinema."),
        "no subject names in {body}"
    );
}

#[tokio::test]
async fn validation_and_error_shapes_of_the_new_endpoints() {
    let (_nats, _bus, router, _) = bare(Config::default()).await;
    let cases = [
        (
            post("/api/pis/test-pi/audio_input", "{oops", None),
            StatusCode::BAD_REQUEST,
        ),
        (
            post("/api/pis/test-pi/audio_input", r#"{"input":"none"}"#, None),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post(
                "/api/pis/test-pi/audio_input",
                r#"{"audio_input":" "}"#,
                None,
            ),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            post(
                "/api/pis/nope/audio_input",
                r#"{"audio_input":"none"}"#,
                None,
            ),
            StatusCode::NOT_FOUND,
        ),
        (get("/api/pis/nope/devices"), StatusCode::NOT_FOUND),
        (get("/api/pis/a.b/devices"), StatusCode::BAD_REQUEST),
        (get("/api/clips/search"), StatusCode::UNPROCESSABLE_ENTITY),
        (
            get("/api/clips/search?q=%20"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            get("/api/clips/search?q=hi&mode=bogus"),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            get("/api/clips/search?q=hi&limit=-1"),
            StatusCode::BAD_REQUEST,
        ),
        // No clip-selector on this bus.
        (
            get("/api/clips/search?q=hi"),
            StatusCode::SERVICE_UNAVAILABLE,
        ),
        (get("/api/clips/films"), StatusCode::SERVICE_UNAVAILABLE),
        (get("/api/events?session=a.b"), StatusCode::BAD_REQUEST),
        (get("/api/audio?session=*"), StatusCode::BAD_REQUEST),
        (
            get("/api/cleanup-old-sessions?older_than_s=soon"),
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            Request::delete("/api/cleanup-old-sessions?older_than_s=soon")
                .body(Body::empty())
                .unwrap(),
            StatusCode::BAD_REQUEST,
        ),
        (get("/no/such/page"), StatusCode::NOT_FOUND),
    ];
    for (req, want) in cases {
        let what = format!("{} {}", req.method(), req.uri());
        let (code, json) = call(&router, req).await;
        assert_eq!(code, want, "{what}: {json}");
        if code != StatusCode::METHOD_NOT_ALLOWED {
            assert!(
                !json["error"].as_str().unwrap_or_default().is_empty(),
                "{what}: {json}"
            );
        }
    }
}

#[tokio::test]
async fn pis_by_heartbeat_age_and_their_spawner_missing() {
    let (_nats, bus, router, _) = bare(Config::default()).await;
    let store = bus.kv(bus::names::PIS_BUCKET).await.unwrap();
    let now = wire::now_ms();
    for (pi, age_ms) in [
        ("fresh-pi", 1_000),
        ("late-pi", 45_000),
        ("gone-pi", 90_000),
    ] {
        let p = wire::v1::PiPresence {
            pi_id: pi.into(),
            heartbeat_ms: now - age_ms,
            sessions: vec!["s1".into()],
            max_sessions: 1,
            audio_input: "none".into(),
            ..Default::default()
        };
        bus::kv_put(&store, pi, &p).await.unwrap();
    }
    let (code, body) = call(&router, get("/api/pis")).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let words: Vec<(&str, &str)> = body["pis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["pi_id"].as_str().unwrap(), p["status"].as_str().unwrap()))
        .collect();
    assert_eq!(
        words,
        [
            ("fresh-pi", "online"),
            ("gone-pi", "offline"),
            ("late-pi", "stale")
        ]
    );
    assert_eq!(body["pis"][0]["sessions"][0], "s1");
    // A known Pi whose spawner does not answer: 503 with a message.
    let (code, body) = call(&router, get("/api/pis/fresh-pi/devices")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("no service answers")
    );
}

/// Reads an SSE body until `want` shows up in it (or 10 s pass).
async fn read_until(body: &mut axum::body::BodyDataStream, seen: &mut String, want: &str) {
    use futures::StreamExt;
    tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while !seen.contains(want) {
            let chunk = body.next().await.expect("stream open").unwrap();
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{want:?} never came; got {seen:?}"));
}

#[tokio::test]
async fn bus_events_reach_sse_clients_and_metrics() {
    let (_nats, bus, router, state) = bare(Config::default()).await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let relay = state.start_relay(shutdown.clone()).await.unwrap();

    let resp = router
        .clone()
        .oneshot(get("/api/events?session=s1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    let mut everything = router
        .clone()
        .oneshot(get("/api/events"))
        .await
        .unwrap()
        .into_body()
        .into_data_stream();
    let (_, metrics) = call_text(&router, get("/metrics")).await;
    assert!(
        metrics.contains("cinema_sse_clients{stream=\"events\"} 2"),
        "{metrics}"
    );

    // Another session's event, then one of s1: the filtered stream sees s1's.
    let other = wire::v1::Transcript {
        session_id: "s2".into(),
        text: "not for s1".into(),
        ..Default::default()
    };
    bus.publish(
        bus::subjects::session("s2", bus::subjects::SessionEvent::Transcript),
        &other,
    )
    .await
    .unwrap();
    let ev = wire::v1::ConversationEvent {
        session_id: "s1".into(),
        turn: 1,
        at_ms: 5,
        kind: Some(wire::v1::conversation_event::Kind::Latency(
            wire::v1::TurnLatency {
                total_ms: 420,
                ..Default::default()
            },
        )),
    };
    bus.publish(
        bus::subjects::session("s1", bus::subjects::SessionEvent::Conversation),
        &ev,
    )
    .await
    .unwrap();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "\"total_ms\":420").await;
    assert!(seen.contains("event: conversation"), "{seen}");
    assert!(!seen.contains("not for s1"), "{seen}");
    let mut all = String::new();
    read_until(&mut everything, &mut all, "\"total_ms\":420").await;
    assert!(all.contains("not for s1"), "{all}");
    // Ids increase across the gateway: s2's transcript was 1, s1's event 2.
    assert!(seen.contains("id: 2"), "{seen}");
    assert!(all.contains("id: 1") && all.contains("id: 2"), "{all}");

    // A spoken line that ended at 1.000 s, a greeting (not an answer), then
    // the answer's play command at 1.400 s: 0.4 s from end of speech to play.
    let spoken = wire::v1::Transcript {
        session_id: "s1".into(),
        text: "where is the station".into(),
        is_final: true,
        source: wire::v1::TranscriptSource::Speech as i32,
        speech_end_ms: 1000,
        ..Default::default()
    };
    bus.publish(
        bus::subjects::session("s1", bus::subjects::SessionEvent::Transcript),
        &spoken,
    )
    .await
    .unwrap();
    // s1 is Pi pi-1's, as room-manager records it; what another Pi says of
    // it is not shown.
    let sessions = bus.kv(bus::names::SESSIONS_BUCKET).await.unwrap();
    let s1 = wire::v1::Session {
        id: "s1".into(),
        pi_id: "pi-1".into(),
        ..Default::default()
    };
    bus::kv_cas(&sessions, "s1", &s1, 0).await.unwrap();
    for (pi, greeting, at_ms, id) in [
        ("pi-1", true, 1100, "greet"),
        ("pi-2", false, 1200, "forged"),
        ("pi-1", false, 1400, "answer"),
    ] {
        let play = wire::v1::PlayCommand {
            session_id: "s1".into(),
            command_id: id.into(),
            clip_id: "c1".into(),
            greeting,
            at_ms,
        };
        bus.publish(
            bus::subjects::pi_session(pi, "s1", bus::subjects::SessionEvent::Play),
            &play,
        )
        .await
        .unwrap();
    }
    read_until(&mut everything, &mut all, "\"command_id\":\"answer\"").await;
    assert!(
        !all.contains("forged"),
        "another Pi's word was relayed: {all}"
    );

    // One service instance on the bus, for the per-service metrics (added
    // now: it would not answer the streams' record requests).
    let svc = bus::service::start(bus.client(), "status-store", "test")
        .await
        .unwrap();
    let _get = bus::service::endpoint(&svc, &bus::endpoints::status::GET)
        .await
        .unwrap();
    let (resp, metrics) = call_text(&router, get("/metrics")).await;
    assert_eq!(
        resp, "text/plain; version=0.0.4; charset=utf-8",
        "Prometheus text format"
    );
    for want in [
        "cinema_turn_latency_seconds_count 1",
        "cinema_turn_latency_seconds_bucket{le=\"0.5\"} 1",
        "cinema_bus_events_relayed_total{event=\"conversation\"} 1",
        "cinema_bus_events_relayed_total{event=\"transcript\"} 2",
        "cinema_bus_events_relayed_total{event=\"play\"} 2",
        "cinema_speech_to_play_seconds_count 1",
        "cinema_speech_to_play_seconds_bucket{le=\"0.3\"} 0",
        "cinema_speech_to_play_seconds_bucket{le=\"0.4\"} 1",
        "cinema_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"200\"} 1",
        "# TYPE cinema_service_requests_total counter",
        "# TYPE cinema_service_uptime_seconds gauge",
        "cinema_service_uptime_seconds{instance=\"",
        "cinema_service_requests_total{endpoint=\"get\",instance=\"",
    ] {
        assert!(metrics.contains(want), "{want} missing from\n{metrics}");
    }
    drop(body);
    drop(everything);
    let (_, metrics) = call_text(&router, get("/metrics")).await;
    assert!(
        metrics.contains("cinema_sse_clients{stream=\"events\"} 0"),
        "{metrics}"
    );

    shutdown.cancel();
    relay.await.unwrap();
}

/// The content type and the text of a response.
async fn call_text(router: &axum::Router, req: Request<Body>) -> (String, String) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
        .await
        .unwrap();
    (ct, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn the_dashboard_is_served_from_the_binary() {
    let (_nats, _bus, router, _) = bare(Config::default()).await;
    let (ct, html) = call_text(&router, get("/")).await;
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(html.contains("<script src=\"/app.js\"></script>"));
    let (ct, js) = call_text(&router, get("/app.js")).await;
    assert_eq!(ct, "text/javascript; charset=utf-8");
    assert!(js.contains("new EventSource"));
    let (ct, _) = call_text(&router, get("/app.css")).await;
    assert_eq!(ct, "text/css; charset=utf-8");
    // Nothing is fetched from another site.
    for text in [&html, &js] {
        assert!(!text.contains("https://"), "a CDN reference");
    }
}

#[tokio::test]
async fn audio_levels_are_throttled_per_session() {
    let (_nats, bus, router, _) = bare(Config::default()).await;
    let resp = router
        .clone()
        .oneshot(get("/api/audio?session=s1"))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let mut body = resp.into_body().into_data_stream();
    // 50 frames a second for a second, as a pi-client sends them, and a
    // frame of another session.
    let publisher = tokio::spawn(async move {
        for seq in 0..50u64 {
            for sid in ["s1", "s2"] {
                let frame = wire::v1::AudioFrame {
                    session_id: sid.into(),
                    seq,
                    sample_rate: 16_000,
                    level: if sid == "s2" {
                        0.99
                    } else {
                        seq as f32 / 100.0
                    },
                    ..Default::default()
                };
                bus.publish(bus::subjects::audio("pi-1", sid), &frame)
                    .await
                    .unwrap();
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
    let mut seen = String::new();
    read_until(&mut body, &mut seen, "\"seq\":49").await;
    publisher.await.unwrap();
    let levels = seen.matches("event: level").count();
    assert!(
        (5..=15).contains(&levels),
        "{levels} level events for one second of frames:\n{seen}"
    );
    assert!(!seen.contains("0.99"), "another session's level: {seen}");
}

/// The OpenAPI document and the router agree: every route is described, and
/// every described operation reaches a handler (not the 404 fallback).
#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let (_nats, _bus, router, _) = bare(Config::default()).await;
    let (ct, text) = call_text(&router, get("/api/openapi.json")).await;
    assert_eq!(ct, "application/json");
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    // Every resource module's `router()`.
    let source = [
        include_str!("../src/assets.rs"),
        include_str!("../src/sessions.rs"),
        include_str!("../src/talk.rs"),
        include_str!("../src/events.rs"),
        include_str!("../src/pis.rs"),
        include_str!("../src/library.rs"),
        include_str!("../src/health.rs"),
    ]
    .concat();
    let routed: Vec<&str> = source
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|p| !matches!(*p, "/app.js" | "/app.css" | "/mic-worklet.js"))
        .collect();
    assert!(routed.len() > 20, "{routed:?}");
    // The routes the cross-site checks guard are the documented writes.
    let mut writes: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .keys()
                .filter(|m| *m != "get")
                .map(|m| (m.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    writes.sort();
    let mut guarded: Vec<(String, String)> = dashboard_gateway::WRITES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    guarded.sort();
    assert_eq!(writes, guarded, "auth::WRITES and the document differ");
    for p in &routed {
        assert!(paths.contains_key(*p), "{p} is routed but not documented");
    }
    for (path, ops) in paths {
        let uri = path.replace("{id}", "x").replace("{pi}", "x");
        for method in ops.as_object().unwrap().keys() {
            let req = Request::builder()
                .method(method.to_uppercase().as_str())
                .uri(&uri)
                .header("content-type", "application/json")
                .body(Body::from("{"))
                .unwrap();
            let resp = router.clone().oneshot(req).await.unwrap();
            let status = resp.status();
            if resp.headers()["content-type"] == "text/event-stream" {
                continue;
            }
            let bytes = axum::body::to_bytes(resp.into_body(), 1 << 22)
                .await
                .unwrap();
            let body = String::from_utf8_lossy(&bytes);
            assert!(
                !body.contains("no such endpoint") && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is documented but not routed: {status} {body}"
            );
        }
    }
}

/// A made-up HTTP method is counted under one label, however many a client
/// invents.
#[tokio::test]
async fn made_up_methods_share_one_metrics_label() {
    let (_nats, _bus, router, _) = bare(Config::default()).await;
    for m in ["FOOBAR", "BAZ1", "PROPFIND"] {
        let req = Request::builder()
            .method(m)
            .uri("/api/sessions")
            .body(Body::empty())
            .unwrap();
        let (code, _) = call(&router, req).await;
        assert_eq!(code, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let (_, text) = call_text(&router, get("/metrics")).await;
    assert!(text.contains(r#"method="other""#), "{text}");
    for m in ["FOOBAR", "BAZ1", "PROPFIND"] {
        assert!(!text.contains(m), "{m} in {text}");
    }
}

/// Live streams are held memory and a subscription each: past the limit
/// one more is a 503 that says so, and a closed one frees its place.
#[tokio::test]
async fn live_streams_are_limited() {
    let (_nats, _bus, router, _) = bare(Config {
        max_sse_clients: 2,
        ..Config::default()
    })
    .await;
    let first = router.clone().oneshot(get("/api/events")).await.unwrap();
    let second = router.clone().oneshot(get("/api/audio")).await.unwrap();
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = router.clone().oneshot(get("/api/events")).await.unwrap();
    assert_eq!(third.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(third.headers()["retry-after"], "5");
    let body = axum::body::to_bytes(third.into_body(), 1 << 16)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&body).contains("CINEMA_GATEWAY_MAX_SSE_CLIENTS"),
        "{body:?}"
    );
    drop(first);
    let again = router.clone().oneshot(get("/api/events")).await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    drop(second);
}
