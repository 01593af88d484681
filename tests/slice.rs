//! The first complete conversation, across every service, over a real NATS
//! server, ending with a real (headless) mpv playing a clip. The services
//! run in this process (`World::start_in_process`); the Pi's clients and
//! mpv are processes.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use tests::{World, next};
use wire::v1::{GetClipReply, GetClipRequest, PlayCommand, PlaybackEvent, PlaybackState};

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_conversation_end_to_end() {
    let w = World::start_in_process().await;
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;

    // 1. Connect: seed-compatible reply, one pi-client spawned.
    let body = w.connect().await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    assert!(body["room_url"].as_str().unwrap().contains(&sid));
    assert!(!body["token"].as_str().unwrap().is_empty());
    let pid = body["pid"].as_i64().unwrap() as i32;
    assert!(pid > 0 && testkit::group_alive(pid), "the pi-client runs");

    // 2-3. The client joins; the director greets once; mpv plays the greeting.
    let greeting: PlayCommand = next(&mut plays, "the greeting", |p: &PlayCommand| {
        p.session_id == sid
    })
    .await;
    assert!(greeting.greeting);
    let started: PlaybackEvent = next(&mut playback, "greeting playback", |e: &PlaybackEvent| {
        e.command_id == greeting.command_id && e.state() == PlaybackState::Started
    })
    .await;
    assert_eq!(started.clip_id, greeting.clip_id);
    next(&mut playback, "greeting finished", |e: &PlaybackEvent| {
        e.command_id == greeting.command_id && e.state() == PlaybackState::Finished
    })
    .await;

    // 4-5. A typed line; the director answers with the line that followed it.
    let (code, said) = w
        .post(
            &format!("/api/sessions/{sid}/say"),
            Some(serde_json::json!({"text": "Where is the station?"})),
        )
        .await;
    assert_eq!(code, 202, "{said}");
    let answer: PlayCommand = next(&mut plays, "the answer", |p: &PlayCommand| {
        p.session_id == sid && !p.greeting
    })
    .await;
    let clip: GetClipReply = w
        .bus
        .request(
            &endpoints::clips::GET,
            &GetClipRequest {
                clip_id: answer.clip_id.clone(),
            },
        )
        .await
        .unwrap();
    let clip = clip.clip.unwrap();
    assert_eq!(
        clip.caption,
        "The station is down the road, past the bakery."
    );
    let started: PlaybackEvent = next(&mut playback, "answer playback", |e: &PlaybackEvent| {
        e.command_id == answer.command_id && e.state() == PlaybackState::Started
    })
    .await;
    assert_eq!(
        (started.start_s, started.end_s),
        (clip.start_s, clip.end_s),
        "mpv plays the clip's exact range"
    );
    let finished: PlaybackEvent = next(&mut playback, "answer finished", |e: &PlaybackEvent| {
        e.command_id == answer.command_id && e.state() == PlaybackState::Finished
    })
    .await;
    assert!(
        finished.at_ms - started.at_ms >= ((clip.end_s - clip.start_s) * 1000.0) as i64 - 300,
        "played the whole range"
    );

    // 6. The record, in the seed's shape.
    let (code, status) = w.get(&format!("/conversation-status/{sid}")).await;
    assert_eq!(code, 200);
    assert_eq!(status["identifier"], sid.as_str());
    assert_eq!(status["status"], "active");
    assert_eq!(status["greetings"], 1, "greeted exactly once: {status}");
    let messages = status["context"]["messages"].as_array().unwrap();
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(messages[1]["role"], "user");
    assert_eq!(contents[1], "Where is the station?");
    assert_eq!(messages[2]["role"], "assistant");
    assert_eq!(
        contents[2],
        "[VIDEO: Station Story | \"The station is down the road, past the bakery.\"]"
    );
    assert_eq!(
        status["context"]["display_messages"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // The first generation's status line: shown, never given to the director.
    let (code, body) = w
        .post(
            "/update-status",
            Some(serde_json::json!({
                "identifier": sid,
                "status": "Visitor left the phone off the hook",
                "status_context": {"step": 3}
            })),
        )
        .await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status_context"]["step"], 3, "{body}");
    let status = testkit::eventually(Duration::from_secs(10), "the status line", async || {
        let (_, s) = w.get(&format!("/conversation-status/{sid}")).await;
        (s["status_update"] == "Visitor left the phone off the hook").then_some(s)
    })
    .await;
    let shown = status["context"]["display_messages"].as_array().unwrap();
    assert_eq!(shown.len(), 4);
    assert_eq!(shown[3]["role"], "system");
    assert_eq!(status["context"]["messages"].as_array().unwrap().len(), 3);
    assert_eq!(status["status_context"]["step"], 3, "{status}");
    let (code, _) = w
        .post(
            "/update-status",
            Some(serde_json::json!({"identifier": "nosuchsession", "status": "x"})),
        )
        .await;
    assert_eq!(code, 404);

    // 7. End: the client and its mpv are gone, the status says ended.
    let (code, ended) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200, "{ended}");
    assert_eq!(ended["state"], "ended");
    testkit::eventually(
        Duration::from_secs(10),
        "the client's process group to be gone",
        async || (!testkit::group_alive(pid)).then_some(()),
    )
    .await;
    assert!(
        testkit::pids_matching(&format!("cinema-mpv-{pid}-")).is_empty(),
        "no mpv survives the session"
    );
    let status = testkit::eventually(Duration::from_secs(10), "status ended", async || {
        let (_, s) = w.get(&format!("/conversation-status/{sid}")).await;
        (s["status"] == "ended").then_some(s)
    })
    .await;
    assert_eq!(status["end_reason"], "ended by operator");

    // Exactly one greeting was ever commanded for this session.
    let stream = w
        .bus
        .jetstream()
        .get_stream(bus::names::EVENTS_STREAM)
        .await
        .unwrap();
    let mut greetings = 0;
    let consumer = stream
        .create_consumer(bus::async_nats::jetstream::consumer::pull::Config {
            filter_subject: subjects::session(&sid, SessionEvent::Play),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut batch = consumer
        .fetch()
        .max_messages(100)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        if bus::decode_message::<PlayCommand>(&m).unwrap().greeting {
            greetings += 1;
        }
    }
    assert_eq!(greetings, 1);

    // 8. Health reports every service and NATS.
    let (code, health) = w.get("/health").await;
    assert_eq!(code, 200, "{health}");
    assert_eq!(health["nats"]["status"], "ok");
    for name in bus::names::service::ALL {
        assert_eq!(health["services"][name]["status"], "ok", "{name}: {health}");
    }
    w.stop().await;
}

/// The first generation's clients, replayed with their own bodies: the
/// Pi client's connect (`cinema-bot-app`'s `pi_daily_client_*.py`), the
/// dashboard's `start_pi_client` (`frontend-next`'s `index.tsx`), the bot's
/// status updates (`status_utils.py`) and the dashboard's polling with
/// `last_seen` (`server.py`'s `get_conversation_status`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_generations_requests_work_word_for_word() {
    let w = World::start_in_process().await;
    let mut joined = w.subscribe(SessionEvent::Joined).await;

    // The Pi client's connect, exactly as it sent it.
    let connect = r#"{"config": [{"service": "tts", "options": [{"name": "provider", "value": "cartesia"}]}]}"#;
    let body = testkit::eventually(WAIT, "a session (the Pi's presence known)", async || {
        let (code, body) = w.post_raw("/api/connect", connect).await;
        (code == 200).then_some(body)
    })
    .await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    let room_url = body["room_url"].as_str().unwrap().to_string();
    let token = body["token"].as_str().unwrap().to_string();
    assert!(!room_url.is_empty() && !token.is_empty(), "{body}");
    next(
        &mut joined,
        "the client joined",
        |j: &wire::v1::ClientJoined| j.session_id == sid,
    )
    .await;

    // Before any record, and for an id nobody made: "initializing".
    let (code, unknown) = w.get("/conversation-status/nobody-made-this").await;
    assert_eq!(code, 200, "{unknown}");
    assert_eq!(unknown["status"], "initializing");
    assert_eq!(unknown["context"], serde_json::json!({}));

    // The dashboard starts the Pi's client for the room: the one running.
    let start = serde_json::json!({
        "roomUrl": room_url,
        "token": token,
        "backendUrl": "http://192.168.1.201:8765",
    })
    .to_string();
    let (code, started) = w.post_raw("/api/start_pi_client", &start).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["success"], true, "{started}");
    assert_eq!(started["pid"], body["pid"], "{started}");

    // The bot's status updates, as status_utils.py posted them.
    for (status, context) in [
        ("Greeting the visitor", r#"{"step": "greeting"}"#),
        ("Listening", "null"),
    ] {
        let update = format!(
            r#"{{"status": "{status}", "identifier": "{sid}", "status_context": {context}, "ui_override": null}}"#
        );
        let (code, reply) = w.post_raw("/update-status", &update).await;
        assert_eq!(code, 200, "{reply}");
        assert_eq!(reply["status"], status, "{reply}");
    }
    // The record sent back by a later bot: `context` is accepted.
    let with_context = format!(
        r#"{{"status": "Thinking", "identifier": "{sid}", "status_context": {{"step": 3}}, "ui_override": {{"show": "spinner"}}, "context": {{"messages": [], "status_messages": ["Listening"]}}}}"#
    );
    let (code, reply) = w.post_raw("/update-status", &with_context).await;
    assert_eq!(code, 200, "{reply}");
    assert_eq!(reply["ui_override"]["show"], "spinner", "{reply}");

    // The dashboard's polling: every status line, then only the new ones.
    let all = testkit::eventually(WAIT, "the three status lines", async || {
        let (_, s) = w
            .get(&format!("/conversation-status/{sid}?last_seen=0"))
            .await;
        (s["context"]["total_message_count"] == 3).then_some(s)
    })
    .await;
    assert_eq!(
        all["context"]["status_messages"],
        serde_json::json!(["Greeting the visitor", "Listening", "Thinking"]),
        "{all}"
    );
    assert_eq!(all["status_context"]["step"], 3, "{all}");
    assert_eq!(all["identifier"], sid.as_str());
    let (_, newer) = w
        .get(&format!("/conversation-status/{sid}?last_seen=2"))
        .await;
    assert_eq!(
        newer["context"]["status_messages"],
        serde_json::json!(["Thinking"])
    );
    assert_eq!(newer["context"]["total_message_count"], 3);
    let (_, past_the_end) = w
        .get(&format!("/conversation-status/{sid}?last_seen=99"))
        .await;
    assert_eq!(
        past_the_end["context"]["status_messages"],
        serde_json::json!([])
    );
    let (code, bad) = w
        .get(&format!("/conversation-status/{sid}?last_seen=-1"))
        .await;
    assert_eq!(code, 400, "{bad}");

    // Health, and the cleanup of ended sessions.
    let (code, health) = w.get("/health").await;
    assert_eq!(code, 200, "{health}");
    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    w.clean_up(&sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_breaks_nothing() {
    let w = World::start_in_process().await;
    let (_, before) = w.get("/health").await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;

    // HTTP: unknown session, invalid JSON, wrong shapes, a bad id.
    let (code, body) = w
        .post(
            "/api/sessions/nosuchsession/say",
            Some(serde_json::json!({"text": "hi"})),
        )
        .await;
    assert_eq!(code, 404, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("unknown session"),
        "{body}"
    );
    let (code, body) = w.post_raw("/api/sessions/abc/say", "{not json").await;
    assert_eq!(code, 400, "{body}");
    assert!(!body["error"].as_str().unwrap().is_empty());
    let (code, body) = w.post_raw("/api/sessions/abc/say", r#"{"words": 3}"#).await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = w.post_raw("/api/connect", r#"{"pi_id": 7}"#).await;
    assert_eq!(code, 422, "{body}");
    let (code, body) = w
        .post(
            "/api/sessions/a.b/say",
            Some(serde_json::json!({"text": "hi"})),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    // An id nobody made: the first generation's "initializing".
    let (code, unknown) = w.get("/conversation-status/nosuchsession").await;
    assert_eq!(
        (code, unknown["status"].as_str()),
        (200, Some("initializing"))
    );

    let session = w.connect().await;
    let sid = session["identifier"].as_str().unwrap().to_string();
    let (code, body) = w
        .post(
            &format!("/api/sessions/{sid}/say"),
            Some(serde_json::json!({"text": "   "})),
        )
        .await;
    assert_eq!(code, 422, "{body}");
    // The client is up and listening once its greeting plays.
    next(&mut playback, "the greeting", |e: &PlaybackEvent| {
        e.session_id == sid && e.state() == PlaybackState::Started
    })
    .await;

    // Bus: malformed protobuf on session subjects, core and durable.
    for event in [
        SessionEvent::Play,
        SessionEvent::Transcript,
        SessionEvent::Joined,
        SessionEvent::Conversation,
    ] {
        let subject = if event.on_pi() {
            subjects::pi_session(tests::SIM_PI, &sid, event)
        } else {
            subjects::session(&sid, event)
        };
        w.bus
            .client()
            .publish(subject.clone(), vec![0xff, 0xff, 0x01].into())
            .await
            .unwrap();
        w.bus
            .jetstream()
            .publish(subject, vec![0x0a, 0x09, b'x'].into())
            .await
            .unwrap()
            .await
            .unwrap();
    }
    // A play command with a clip id the library does not have.
    let bogus = PlayCommand {
        session_id: sid.clone(),
        command_id: "bogus-1".into(),
        clip_id: "cdoesnotexist".into(),
        greeting: false,
        at_ms: wire::now_ms(),
    };
    w.bus
        .publish_durable(
            subjects::pi_session(tests::SIM_PI, &sid, SessionEvent::Play),
            &bogus,
            "bogus-1",
        )
        .await
        .unwrap();
    let failed: PlaybackEvent = next(&mut playback, "the failed playback", |e: &PlaybackEvent| {
        e.command_id == "bogus-1"
    })
    .await;
    assert_eq!(failed.state(), PlaybackState::Failed);
    assert!(failed.error.contains("unknown clip id"), "{}", failed.error);
    let status = testkit::eventually(WAIT, "the error in the record", async || {
        let (_, s) = w.get(&format!("/conversation-status/{sid}")).await;
        s["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("unknown clip id"))
            .then_some(s)
    })
    .await;
    assert_eq!(status["status"], "active");

    // Nothing crashed: the same service instances answer, and a real line still works.
    let (code, after) = w.get("/health").await;
    assert_eq!(code, 200);
    for name in bus::names::service::ALL {
        assert_eq!(
            before["services"][name]["instances"], after["services"][name]["instances"],
            "{name} restarted"
        );
    }
    let (code, _) = w
        .post(
            &format!("/api/sessions/{sid}/say"),
            Some(serde_json::json!({"text": "Where is the station?"})),
        )
        .await;
    assert_eq!(code, 202);
    testkit::eventually(WAIT, "the answer after bad input", async || {
        let (_, s) = w.get(&format!("/conversation-status/{sid}")).await;
        s["context"]["messages"]
            .as_array()
            .is_some_and(|m| m.len() >= 3)
            .then_some(())
    })
    .await;
    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    let (code, body) = w
        .post(
            &format!("/api/sessions/{sid}/say"),
            Some(serde_json::json!({"text": "hello?"})),
        )
        .await;
    assert_eq!(code, 409, "{body}");
    w.stop().await;
}
