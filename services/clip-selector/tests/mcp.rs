//! `clip-selector mcp` through a real MCP client (rmcp): over stdio with no
//! NATS to be had (search and list work, play is a tool error that says
//! why), and over streamable HTTP with a private nats-server, where a play
//! becomes a `PlayCommand` on the session's Pi (room-manager stood in for by
//! a typed responder).
//!
//! The binary is cargo's own build of this package (`CARGO_BIN_EXE_…`), not
//! `testkit::bin`: that builds the whole workspace, whisper.cpp included.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use library::{CutOptions, Library};
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::{ConfigureCommandExt, StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use wire::v1::{PlayCommand, Session, SessionRef, SessionReply, SessionState};

const BIN: &str = env!("CARGO_BIN_EXE_clip-selector");

const TRAIN: &[&str] = &[
    "Good evening. Is this seat taken?",
    "Where are you going?",
    "I am going home, to the city by the river.",
];
const RAIN: &[&str] = &[
    "It has been raining all week.",
    "Bring an umbrella tomorrow.",
];

type Client = RunningService<RoleClient, ()>;

fn library() -> tempfile::TempDir {
    testkit::film_library(&[("midnight-train", TRAIN), ("rainy-days", RAIN)])
}

/// The clip id of a line, as the service cuts it (default options).
fn clip_id(root: &Path, caption: &str) -> String {
    let lib = Library::open(root, CutOptions::default(), None).unwrap();
    lib.clips()
        .iter()
        .find(|c| c.caption == caption)
        .unwrap_or_else(|| panic!("no clip says {caption:?}"))
        .id
        .clone()
}

fn command(root: &Path, nats_url: &str) -> tokio::process::Command {
    tokio::process::Command::new(BIN).configure(|c| {
        c.arg("mcp")
            .env("CINEMA_LIBRARY", root)
            .env("NATS_URL", nats_url)
            .env("RUST_LOG", "info,tantivy=warn,rmcp=warn")
            .env_remove("CINEMA_CONFIG");
    })
}

async fn call(client: &Client, tool: &'static str, args: Value) -> CallToolResult {
    let Value::Object(args) = args else {
        panic!("arguments must be an object")
    };
    tokio::time::timeout(
        Duration::from_secs(20),
        client.call_tool(CallToolRequestParams::new(tool).with_arguments(args)),
    )
    .await
    .unwrap_or_else(|_| panic!("{tool} did not answer"))
    .unwrap_or_else(|e| panic!("{tool} failed as a protocol error: {e}"))
}

/// The result's structured content; panics, with the message, on a tool error.
fn ok(result: &CallToolResult) -> Value {
    assert_ne!(result.is_error, Some(true), "{}", text(result));
    result
        .structured_content
        .clone()
        .expect("structured content")
}

/// The tool error's message; panics when the call succeeded.
fn refusal(result: &CallToolResult) -> String {
    assert_eq!(
        result.is_error,
        Some(true),
        "expected a tool error: {result:?}"
    );
    text(result)
}

fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn stdio_searches_and_lists_without_nats_and_play_says_why_not() {
    let lib = library();
    let root = lib.path().canonicalize().unwrap();
    let nowhere = format!("nats://127.0.0.1:{}", testkit::free_port());
    let transport = TokioChildProcess::builder(command(&root, &nowhere))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
        .0;
    let client = ().serve(transport).await.expect("MCP handshake over stdio");

    // The tools and their arguments: the llm director's names.
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
    assert_eq!(
        names,
        ["search_video_clips", "play_video_by_params", "list_films"]
    );
    let schema = |i: usize| Value::Object((*tools[i].input_schema).clone());
    assert_eq!(schema(0)["required"], json!(["description"]));
    assert_eq!(schema(0)["properties"]["limit"]["type"], "integer");
    for key in [
        "session_id",
        "clip_id",
        "reasoning",
        "video_file",
        "start",
        "end",
    ] {
        assert!(
            schema(1)["properties"].get(key).is_some(),
            "play has no {key}"
        );
    }
    assert_eq!(schema(2)["type"], "object");

    // The right line, with every field of the first generation's options.
    let found = ok(&call(
        &client,
        "search_video_clips",
        json!({"description": "where are you going", "limit": 3}),
    )
    .await);
    let options = found["options"].as_array().unwrap();
    assert!(!options.is_empty() && options.len() <= 3, "{found}");
    let best = &options[0];
    assert_eq!(best["caption"], TRAIN[1]);
    assert_eq!(best["clip_id"], clip_id(&root, TRAIN[1]).as_str());
    assert_eq!(best["film"], "Midnight Train");
    assert_eq!(
        best["description"],
        format!("[VIDEO: Midnight Train | \"{}\"]", TRAIN[1])
    );
    assert_eq!(best["video_file"], "midnight-train.mp4");
    let (start, end) = (
        best["start"].as_f64().unwrap(),
        best["end"].as_f64().unwrap(),
    );
    assert!(start >= 0.0 && end > start, "{best}");
    let duration = best["duration"].as_f64().unwrap();
    assert!((duration - (end - start)).abs() < 0.02, "{best}");
    assert_eq!(best["follows_line"], TRAIN[0]);

    // Huge limits are clamped; a limit of the wrong type is a tool error.
    let many = ok(&call(
        &client,
        "search_video_clips",
        json!({"description": "the", "limit": 1e12}),
    )
    .await);
    assert!(many["options"].as_array().unwrap().len() <= 20);
    let why = refusal(&call(&client, "search_video_clips", json!({"limit": 2})).await);
    assert!(why.contains("description"), "{why}");
    let why = refusal(
        &call(
            &client,
            "search_video_clips",
            json!({"description": ["rain"]}),
        )
        .await,
    );
    assert!(why.contains("must be a string"), "{why}");

    let films = ok(&call(&client, "list_films", json!({})).await);
    let films = films["films"].as_array().unwrap();
    let titles: Vec<&str> = films.iter().filter_map(|f| f["title"].as_str()).collect();
    assert_eq!(titles, ["Midnight Train", "Rainy Days"]);
    assert_eq!(films[0]["lines"], 3);
    assert_eq!(films[1]["video_file"], "rainy-days.mp4");

    // Playing needs NATS: the error names it, and the server stays up.
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "s-1", "clip_id": best["clip_id"], "reasoning": "a question"}),
        )
        .await,
    );
    assert!(
        why.contains("NATS") && why.contains(&nowhere),
        "the error names NATS and its URL: {why}"
    );

    // Paths outside the library are refused before NATS is even tried.
    for file in [
        "/etc/passwd",
        "../../etc/passwd",
        "midnight-train/../../x.mp4",
    ] {
        let why = refusal(
            &call(
                &client,
                "play_video_by_params",
                json!({"session_id": "s-1", "video_file": file, "start": 0, "end": 2, "reasoning": "r"}),
            )
            .await,
        );
        assert!(why.contains("outside the library"), "{file}: {why}");
    }
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "s-1", "clip_id": "../../etc/passwd", "reasoning": "r"}),
        )
        .await,
    );
    assert!(why.contains("not a clip id"), "{why}");
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"clip_id": best["clip_id"], "reasoning": "r"}),
        )
        .await,
    );
    assert!(why.contains("session_id"), "{why}");

    // An unknown tool is the protocol's error, not a crash.
    let unknown = client
        .call_tool(CallToolRequestParams::new("rewind_tape"))
        .await;
    assert!(unknown.is_err(), "{unknown:?}");
    // Still serving after all of that.
    ok(&call(&client, "list_films", json!({})).await);

    client.cancel().await.unwrap();
}

/// A stand-in room-manager that knows one active session on `pi-7` and one
/// that is over.
fn stand_in_room_manager(bus: &bus::Bus, stop: &CancellationToken) {
    let bus = bus.clone();
    let stop = stop.clone();
    tokio::spawn(async move {
        let rooms = svc::start(bus.client(), "room-manager", "stand-in")
            .await
            .unwrap();
        let get = svc::endpoint(&rooms, &bus::endpoints::rooms::GET)
            .await
            .unwrap();
        svc::serve(get, stop, 4, |r: SessionRef| async move {
            let state = match r.session_id.as_str() {
                "live-1" => SessionState::Active,
                "over-1" => SessionState::Ended,
                _ => {
                    return Err(Reject::not_found(format!(
                        "unknown session {:?}",
                        r.session_id
                    )));
                }
            };
            Ok(SessionReply {
                session: Some(Session {
                    id: r.session_id,
                    pi_id: "pi-7".into(),
                    state: state as i32,
                    end_reason: "the visitor left".into(),
                    ..Default::default()
                }),
            })
        })
        .await;
    });
}

#[tokio::test]
async fn http_plays_on_the_sessions_pi() {
    // rmcp's HTTP client is reqwest with rustls; in a workspace build its TLS
    // features unify with llm's `rustls-no-provider`, so the workspace's
    // provider (ring) is installed as llm does.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let lib = library();
    let root = lib.path().canonicalize().unwrap();
    let nats = testkit::NatsServer::start();
    let bus = nats.bus("test").await;
    let stop = CancellationToken::new();
    stand_in_room_manager(&bus, &stop);
    let mut plays = bus
        .client()
        .subscribe(subjects::session("live-1", SessionEvent::Play))
        .await
        .unwrap();
    bus.client().flush().await.unwrap();

    let port = testkit::free_port();
    let mut server = command(&root, &nats.url())
        .args(["--http", &format!("127.0.0.1:{port}")])
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}/mcp");
    let client = testkit::eventually(Duration::from_secs(20), "the MCP HTTP server", async || {
        ().serve(StreamableHttpClientTransport::from_uri(url.as_str()))
            .await
            .ok()
    })
    .await;

    // A clip id plays on the session's Pi, durably, with a message id.
    let question = clip_id(&root, TRAIN[1]);
    let played = ok(&call(
        &client,
        "play_video_by_params",
        json!({"session_id": "live-1", "clip_id": question, "reasoning": "asks back"}),
    )
    .await);
    let msg = tokio::time::timeout(Duration::from_secs(10), plays.next())
        .await
        .expect("a play command")
        .unwrap();
    assert_eq!(
        msg.subject.as_str(),
        subjects::pi_session("pi-7", "live-1", SessionEvent::Play)
    );
    let cmd: PlayCommand = bus::decode_message(&msg).unwrap();
    assert_eq!(cmd.session_id, "live-1");
    assert_eq!(cmd.clip_id, question);
    assert!(!cmd.greeting);
    assert!(cmd.at_ms > 0);
    assert_eq!(played["command_id"], cmd.command_id.as_str());
    assert_eq!(played["played"]["clip_id"], question.as_str());
    let msg_id = msg
        .headers
        .as_ref()
        .and_then(|h| h.get(bus::names::MSG_ID_HEADER))
        .map(|v| v.to_string());
    assert_eq!(msg_id.as_deref(), Some(cmd.command_id.as_str()));

    // The first generation's file and times play the clip they overlap.
    let answer = clip_id(&root, TRAIN[2]);
    let lib_now = Library::open(&root, CutOptions::default(), None).unwrap();
    let want = lib_now.clip(&answer).unwrap();
    for file in [
        "midnight-train.mp4",
        "midnight-train",
        root.join("midnight-train.mp4").to_str().unwrap(),
    ] {
        ok(&call(
            &client,
            "play_video_by_params",
            json!({
                "session_id": "live-1",
                "video_file": file,
                "start": want.start_s + 0.2,
                "end": format!("{:.2}", want.end_s - 0.1),
                "reasoning": "legacy"
            }),
        )
        .await);
        let msg = tokio::time::timeout(Duration::from_secs(10), plays.next())
            .await
            .expect("a play command")
            .unwrap();
        let cmd: PlayCommand = bus::decode_message(&msg).unwrap();
        assert_eq!(cmd.clip_id, answer, "{file}");
    }

    // Refusals: an unknown clip, an unknown session, a session that is over,
    // a film that is not in the library.
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "live-1", "clip_id": "c000000000000", "reasoning": "r"}),
        )
        .await,
    );
    assert!(why.contains("unknown clip id"), "{why}");
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "nobody-1", "clip_id": question, "reasoning": "r"}),
        )
        .await,
    );
    assert!(why.contains("unknown session"), "{why}");
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "over-1", "clip_id": question, "reasoning": "r"}),
        )
        .await,
    );
    assert!(
        why.contains("over") && why.contains("visitor left"),
        "{why}"
    );
    let why = refusal(
        &call(
            &client,
            "play_video_by_params",
            json!({"session_id": "live-1", "video_file": "casablanca.mp4", "start": 1, "end": 2, "reasoning": "r"}),
        )
        .await,
    );
    assert!(why.contains("not a film of the library"), "{why}");
    // None of the refusals played anything: the next play command on the
    // bus is the one asked for after them.
    let after = ok(&call(
        &client,
        "play_video_by_params",
        json!({"session_id": "live-1", "clip_id": question, "reasoning": "after the refusals"}),
    )
    .await);
    let msg = tokio::time::timeout(Duration::from_secs(10), plays.next())
        .await
        .expect("a play command")
        .unwrap();
    let next: PlayCommand = bus::decode_message(&msg).unwrap();
    assert_eq!(
        after["command_id"],
        next.command_id.as_str(),
        "a refused play was published: {next:?}"
    );

    // Search works over HTTP too.
    let found = ok(&call(
        &client,
        "search_video_clips",
        json!({"description": "raining all week"}),
    )
    .await);
    assert_eq!(found["options"][0]["caption"], RAIN[0]);

    client.cancel().await.unwrap();
    stop.cancel();
    server.start_kill().unwrap();
    let _ = server.wait().await;
}
