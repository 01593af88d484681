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
