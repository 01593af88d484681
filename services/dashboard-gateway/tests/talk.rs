//! The microphone socket (`/api/sessions/{id}/talk`): auth and refusals as a
//! router (no sockets), then over a real WebSocket: bad frames close it with
//! a clear reason, good audio becomes level frames on the bus, and a play
//! command travels to the page and back as playback events with the echo
//! gate closed in between. room-manager and clip-selector are stood in for
//! by typed responders on a private nats-server.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use dashboard_gateway::{AppState, Config, app};
use futures::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message as Ws;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use wire::v1::{
    Clip, GetClipReply, GetClipRequest, JoinRequest, PlayCommand, PlaybackEvent, PlaybackState,
    Session, SessionRef, SessionReply, SessionState,
};

const TOKEN: &str = "s3cret";
/// The signed session token the stand-in room-manager expects on a join.
const SESSION_TOKEN: &str = "session-token-of-browser-live";

fn session(id: &str, browser: bool, state: SessionState) -> Session {
    Session {
        id: id.into(),
        pi_id: if browser {
            subjects::BROWSER
        } else {
            "test-pi"
        }
        .into(),
        browser,
        state: state as i32,
        token: SESSION_TOKEN.into(),
        ..Default::default()
    }
}

/// room-manager's `get` and `join`, and clip-selector's `get`, answering
/// from a fixed table. Joins are counted.
async fn stand_ins(
    bus: &bus::Bus,
    stop: CancellationToken,
) -> tokio::sync::mpsc::UnboundedReceiver<JoinRequest> {
    let sessions = [
        session("browser-live", true, SessionState::Active),
        session("browser-over", true, SessionState::Ended),
        session("pi-live", false, SessionState::Active),
    ];
    let rooms = svc::start(bus.client(), "room-manager", "stand-in")
        .await
        .unwrap();
    let get = svc::endpoint(&rooms, &bus::endpoints::rooms::GET)
        .await
        .unwrap();
    let join = svc::endpoint(&rooms, &bus::endpoints::rooms::JOIN)
        .await
        .unwrap();
    let clips = svc::start(bus.client(), "clip-selector", "stand-in")
        .await
        .unwrap();
    let clip_get = svc::endpoint(&clips, &bus::endpoints::clips::GET)
        .await
        .unwrap();
    let (joins_tx, joins) = tokio::sync::mpsc::unbounded_channel();
    let find = move |id: &str| sessions.iter().find(|s| s.id == id).cloned();
    let find2 = find.clone();
    tokio::spawn(svc::serve(get, stop.clone(), 4, move |r: SessionRef| {
        let found = find(&r.session_id);
        async move {
            found
                .map(|s| SessionReply { session: Some(s) })
                .ok_or_else(|| Reject::not_found(format!("unknown session {:?}", r.session_id)))
        }
    }));
    tokio::spawn(svc::serve(join, stop.clone(), 4, move |r: JoinRequest| {
        let found = find2(&r.session_id);
        let _ = joins_tx.send(r.clone());
        async move {
            match found {
                Some(s) if r.token == s.token => Ok(SessionReply { session: Some(s) }),
                _ => Err(Reject::new(401, "join refused")),
            }
        }
    }));
    tokio::spawn(svc::serve(
        clip_get,
        stop.clone(),
        4,
        |r: GetClipRequest| async move {
            if r.clip_id != "clip-1" {
                return Err(Reject::not_found("no such clip"));
            }
            Ok(GetClipReply {
                clip: Some(Clip {
                    id: "clip-1".into(),
                    film_id: "film".into(),
                    film_title: "A Film".into(),
                    start_s: 1.5,
                    end_s: 3.0,
                    caption: "Hello there.".into(),
                    ..Default::default()
                }),
                media_url: "http://127.0.0.1:9/media/film".into(),
                ..Default::default()
            })
        },
    ));
    // The services live until the test stops them.
    tokio::spawn({
        let stop = stop.clone();
        async move {
            stop.cancelled().await;
            let _ = rooms.stop().await;
            let _ = clips.stop().await;
        }
    });
    // The stand-ins answer once they are registered.
    testkit::eventually(Duration::from_secs(10), "the stand-ins", async || {
        let up = bus::service::ping_all(bus.client(), Duration::from_millis(200))
            .await
            .ok()?;
        (up.len() >= 2).then_some(())
    })
    .await;
    joins
}

fn upgrade(uri: &str) -> axum::http::request::Builder {
    Request::get(uri)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
}

async fn call(router: &axum::Router, req: Request<Body>) -> (StatusCode, Value) {
    let resp = router.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn rig(config: Config) -> (testkit::NatsServer, bus::Bus, AppState, CancellationToken) {
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("talk-test").await;
    bus.ensure_topology().await.unwrap();
    let state = AppState::new(bus.clone(), &config);
    (nats, bus, state, CancellationToken::new())
}

#[tokio::test]
async fn the_talk_socket_needs_the_token_and_a_live_browser_session() {
    let (_nats, bus, state, stop) = rig(Config {
        api_token: TOKEN.into(),
        ..Config::default()
    })
    .await;
    let _joins = stand_ins(&bus, stop.clone()).await;
    let router = app(state);
    let cases = [
        // No token, a wrong one (query or header): refused before anything.
        (
            upgrade("/api/sessions/browser-live/talk"),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            upgrade("/api/sessions/browser-live/talk?token=wrong"),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            upgrade("/api/sessions/browser-live/talk?token=s3cre"),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        (
            upgrade("/api/sessions/browser-live/talk").header("authorization", "Bearer wrong"),
            StatusCode::UNAUTHORIZED,
            "token",
        ),
        // With the token: only a live browser session can be talked to.
        (
            upgrade("/api/sessions/a.b/talk?token=s3cret"),
            StatusCode::BAD_REQUEST,
            "session id",
        ),
        (
            upgrade("/api/sessions/nope/talk?token=s3cret"),
            StatusCode::NOT_FOUND,
            "unknown session",
        ),
        (
            upgrade("/api/sessions/pi-live/talk?token=s3cret"),
            StatusCode::CONFLICT,
            "browser session",
        ),
        (
            upgrade("/api/sessions/browser-over/talk?token=s3cret"),
            StatusCode::CONFLICT,
            "ended",
        ),
        // A page of another site (cross-site WebSocket); this gateway's own
        // origin is fine.
        (
            upgrade("/api/sessions/browser-live/talk?token=s3cret")
                .header("host", "gw.local:8765")
                .header("origin", "http://evil.example"),
            StatusCode::FORBIDDEN,
            "evil.example",
        ),
        (
            upgrade("/api/sessions/browser-live/talk?token=s3cret")
                .header("host", "gw.local:8765")
                .header("origin", "http://gw.local:8765"),
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket",
        ),
        // Not a WebSocket handshake.
        (
            Request::get("/api/sessions/browser-live/talk?token=s3cret"),
            StatusCode::BAD_REQUEST,
            "WebSocket",
        ),
        // Everything right, but a router called without a connection cannot
        // upgrade: the handshake got past every check.
        (
            upgrade("/api/sessions/browser-live/talk").header("authorization", "Bearer s3cret"),
            StatusCode::UPGRADE_REQUIRED,
            "WebSocket",
        ),
    ];
    for (req, want, says) in cases {
        let req = req.body(Body::empty()).unwrap();
        let what = req.uri().to_string();
        let (code, body) = call(&router, req).await;
        assert_eq!(code, want, "{what}: {body}");
        let msg = body["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "{what}: {body}");
    }
    stop.cancel();
}

/// A gateway on a loopback port, and the talk socket's URL.
async fn serve(state: AppState) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        axum::serve(listener, app(state).into_make_service())
            .await
            .unwrap();
    });
    (
        format!("ws://{addr}/api/sessions/browser-live/talk?token={TOKEN}"),
        server,
    )
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next JSON text message of `type`, skipping others (10 s at most).
async fn next_json(ws: &mut Socket, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await.expect("socket open").unwrap() {
                Ws::Text(t) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Ws::Close(f) => panic!("closed while waiting for {kind}: {f:?}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} message"))
}

/// Reads until the close frame: the error message before it, and its code
/// and reason.
async fn closed(ws: &mut Socket) -> (String, CloseCode, String) {
    tokio::time::timeout(Duration::from_secs(10), async {
        let mut error = String::new();
        loop {
            match ws.next().await {
                Some(Ok(Ws::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "error" {
                        error = v["message"].as_str().unwrap().to_string();
                    }
                }
                Some(Ok(Ws::Close(Some(f)))) => {
                    return (error, f.code, f.reason.as_str().to_string());
                }
                Some(Ok(_)) => {}
                other => panic!("the socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("the socket was not closed")
}

async fn connect(url: &str) -> Socket {
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    next_json(&mut ws, "joined").await;
    ws
}

#[tokio::test]
async fn bad_frames_close_the_socket_with_a_reason() {
    let (_nats, bus, state, stop) = rig(Config {
        api_token: TOKEN.into(),
        ..Config::default()
    })
    .await;
    let mut joins = stand_ins(&bus, stop.clone()).await;
    let (url, server) = serve(state).await;

    // The handshake itself needs the token.
    let wrong = url.replace(TOKEN, "wrong");
    match tokio_tungstenite::connect_async(wrong.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED)
        }
        other => panic!("a wrong token was let in: {other:?}"),
    }

    let cases: [(Ws, CloseCode, &str); 5] = [
        (Ws::Binary(vec![1, 2, 3].into()), CloseCode::Invalid, "odd"),
        (
            Ws::Binary(vec![0; 32_002].into()),
            CloseCode::Size,
            "at most 32000 bytes",
        ),
        (
            Ws::Text("hello".into()),
            CloseCode::Unsupported,
            "expected binary audio",
        ),
        (
            Ws::Text(r#"{"type":"dance"}"#.into()),
            CloseCode::Unsupported,
            "unknown variant",
        ),
        (
            Ws::Text(r#"{"type":"playback","command_id":"x","state":"exploded"}"#.into()),
            CloseCode::Unsupported,
            "exploded",
        ),
    ];
    for (frame, code, says) in cases {
        let what = format!("{frame:?}").chars().take(60).collect::<String>();
        let mut ws = connect(&url).await;
        ws.send(frame).await.unwrap();
        let (error, got, reason) = closed(&mut ws).await;
        assert_eq!(got, code, "{what}: {error}");
        assert!(error.contains(says), "{what}: {error}");
        assert!(
            reason.contains(says) || reason.len() >= 100,
            "{what}: {reason}"
        );
    }
    // Audio much faster than real time (a flood, not a microphone).
    let mut ws = connect(&url).await;
    for _ in 0..20 {
        if ws.send(Ws::Binary(vec![0; 32_000].into())).await.is_err() {
            break;
        }
    }
    let (error, code, _) = closed(&mut ws).await;
    assert_eq!(code, CloseCode::Policy, "{error}");
    assert!(error.contains("faster than real time"), "{error}");
    // Every socket joined with the session's own token, as a client.
    let join = joins.recv().await.unwrap();
    assert_eq!(
        (
            join.session_id.as_str(),
            join.token.as_str(),
            join.pi_id.as_str()
        ),
        ("browser-live", SESSION_TOKEN, subjects::BROWSER)
    );

    // A frame beyond what the socket reads at all ends the connection too,
    // and the gateway lives on.
    let mut ws = connect(&url).await;
    let _ = ws.send(Ws::Binary(vec![0; 2 << 20].into())).await;
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    let mut ws = connect(&url).await;
    assert!(!server.is_finished());
    ws.close(None).await.unwrap();
    stop.cancel();
}

#[tokio::test]
async fn audio_is_heard_and_the_ears_close_while_the_page_plays_a_clip() {
    let (_nats, bus, state, stop) = rig(Config {
        api_token: TOKEN.into(),
        echo_tail_ms: 300,
        ..Config::default()
    })
    .await;
    let _joins = stand_ins(&bus, stop.clone()).await;
    let mut frames = bus
        .client()
        .subscribe(subjects::session_audio("browser-live"))
        .await
        .unwrap();
    let mut playback = bus
        .client()
        .subscribe(subjects::session("browser-live", SessionEvent::Playback))
        .await
        .unwrap();
    let (url, _server) = serve(state).await;
    let mut ws = connect(&url).await;
    assert_eq!(next_json(&mut ws, "listening").await["open"], true);

    // Half a second of a loud tone in 20 ms frames: 25 level frames.
    let tone: Vec<u8> = (0..320)
        .flat_map(|i| (if i % 2 == 0 { 8000i16 } else { -8000 }).to_le_bytes())
        .collect();
    for _ in 0..25 {
        ws.send(Ws::Binary(tone.clone().into())).await.unwrap();
    }
    let mut levels = Vec::new();
    while levels.len() < 25 {
        let m = tokio::time::timeout(Duration::from_secs(5), frames.next())
            .await
            .expect("level frames")
            .unwrap();
        let f: wire::v1::AudioFrame = bus::decode_message(&m).unwrap();
        assert_eq!(
            (f.session_id.as_str(), f.sample_rate, f.pcm.len()),
            ("browser-live", 16_000, 0),
            "levels, never the samples"
        );
        levels.push(f.level);
    }
    assert!(levels.iter().all(|l| *l > 0.7), "{levels:?}");

    // The director plays a clip: the ears close, the page is told what to
    // play, in terms it can load.
    let cmd = PlayCommand {
        session_id: "browser-live".into(),
        command_id: "cmd-1".into(),
        clip_id: "clip-1".into(),
        greeting: true,
        at_ms: wire::now_ms(),
    };
    bus.publish(
        subjects::pi_session(subjects::BROWSER, "browser-live", SessionEvent::Play),
        &cmd,
    )
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws, "listening").await["open"], false);
    let play = next_json(&mut ws, "play").await;
    assert_eq!(play["command_id"], "cmd-1");
    assert_eq!(play["url"], "http://127.0.0.1:9/media/film");
    assert_eq!(
        (play["start_s"].as_f64(), play["end_s"].as_f64()),
        (Some(1.5), Some(3.0))
    );
    assert_eq!(play["greeting"], true);

    let next_playback = async |sub: &mut bus::async_nats::Subscriber| -> PlaybackEvent {
        let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
            .await
            .expect("a playback event")
            .unwrap();
        bus::decode_message(&m).unwrap()
    };
    // A report on some other clip is ignored; this clip's are published.
    for (id, st) in [
        ("cmd-0", "started"),
        ("cmd-1", "started"),
        ("cmd-1", "started"),
    ] {
        let msg = format!(r#"{{"type":"playback","command_id":"{id}","state":"{st}"}}"#);
        ws.send(Ws::Text(msg.into())).await.unwrap();
    }
    let started = next_playback(&mut playback).await;
    assert_eq!(
        (
            started.command_id.as_str(),
            started.state(),
            started.clip_id.as_str()
        ),
        ("cmd-1", PlaybackState::Started, "clip-1")
    );
    assert_eq!((started.start_s, started.end_s), (1.5, 3.0));
    // While it plays, loud audio is heard (levels) but the ears stay shut.
    for _ in 0..10 {
        ws.send(Ws::Binary(tone.clone().into())).await.unwrap();
    }
    ws.send(Ws::Text(
        r#"{"type":"playback","command_id":"cmd-1","state":"finished"}"#.into(),
    ))
    .await
    .unwrap();
    let finished = next_playback(&mut playback).await;
    assert_eq!(
        finished.state(),
        PlaybackState::Finished,
        "one started, then finished"
    );
    // The ears open once the tail has passed (told as audio keeps coming).
    let t0 = std::time::Instant::now();
    let opened = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            ws.send(Ws::Binary(vec![0; 640].into())).await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Some(Ok(Ws::Text(t))) = tokio::time::timeout(Duration::from_millis(1), ws.next())
                .await
                .ok()
                .flatten()
            {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "listening" {
                    return v["open"].clone();
                }
            }
        }
    })
    .await
    .expect("the ears open again");
    assert_eq!(opened, true);
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "opened after {:?}",
        t0.elapsed()
    );

    // A clip that cannot be resolved is reported failed, never sent.
    let bad = PlayCommand {
        command_id: "cmd-2".into(),
        clip_id: "../../etc/passwd".into(),
        ..cmd
    };
    bus.publish(
        subjects::pi_session(subjects::BROWSER, "browser-live", SessionEvent::Play),
        &bad,
    )
    .await
    .unwrap();
    let failed = next_playback(&mut playback).await;
    assert_eq!(
        (failed.command_id.as_str(), failed.state()),
        ("cmd-2", PlaybackState::Failed)
    );
    assert!(failed.error.contains("no such clip"), "{}", failed.error);

    // The page leaves mid-clip: the clip is reported cut short.
    let third = PlayCommand {
        command_id: "cmd-3".into(),
        clip_id: "clip-1".into(),
        session_id: "browser-live".into(),
        ..Default::default()
    };
    bus.publish(
        subjects::pi_session(subjects::BROWSER, "browser-live", SessionEvent::Play),
        &third,
    )
    .await
    .unwrap();
    next_json(&mut ws, "play").await;
    ws.close(None).await.unwrap();
    let cut = next_playback(&mut playback).await;
    assert_eq!(
        (cut.command_id.as_str(), cut.state()),
        ("cmd-3", PlaybackState::Interrupted)
    );
    stop.cancel();
}

#[tokio::test]
async fn the_session_ending_closes_the_socket_and_a_new_page_takes_over() {
    let (_nats, bus, state, stop) = rig(Config::default()).await;
    let _joins = stand_ins(&bus, stop.clone()).await;
    let (url, _server) = serve(state).await;
    let url = url.replace(&format!("?token={TOKEN}"), "");
    let mut first = connect(&url).await;
    let mut second = connect(&url).await;
    let (error, code, _) = closed(&mut first).await;
    assert_eq!(code, CloseCode::Policy);
    assert!(error.contains("another page"), "{error}");
    let ended = wire::v1::SessionEnded {
        session_id: "browser-live".into(),
        reason: "ended by operator".into(),
        ..Default::default()
    };
    bus.publish(
        subjects::session("browser-live", SessionEvent::Ended),
        &ended,
    )
    .await
    .unwrap();
    assert_eq!(
        next_json(&mut second, "ended").await["reason"],
        "ended by operator"
    );
    let (_, code, _) = closed(&mut second).await;
    assert_eq!(code, CloseCode::Normal);
    stop.cancel();
}

#[tokio::test]
async fn a_page_whose_socket_dropped_reconnects_and_plays_on() {
    let (_nats, bus, state, stop) = rig(Config::default()).await;
    let mut joins = stand_ins(&bus, stop.clone()).await;
    let (url, _server) = serve(state).await;
    let url = url.replace(&format!("?token={TOKEN}"), "");
    let first = connect(&url).await;
    // The network goes: no close frame, the TCP connection just ends.
    drop(first);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The page's retry: a new socket for the same session joins again
    // (`connect` waits for its `joined`)…
    let mut again = connect(&url).await;
    for _ in 0..2 {
        assert_eq!(joins.recv().await.unwrap().session_id, "browser-live");
    }
    // …and the next clip the director plays reaches it.
    let cmd = PlayCommand {
        session_id: "browser-live".into(),
        command_id: "after-reconnect".into(),
        clip_id: "clip-1".into(),
        greeting: false,
        at_ms: wire::now_ms(),
    };
    bus.publish(
        subjects::pi_session(subjects::BROWSER, "browser-live", SessionEvent::Play),
        &cmd,
    )
    .await
    .unwrap();
    let play = next_json(&mut again, "play").await;
    assert_eq!(play["command_id"], "after-reconnect");
    assert_eq!(play["clip_id"], "clip-1");
    stop.cancel();
}
