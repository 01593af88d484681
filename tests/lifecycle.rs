//! Sessions and Pis over real processes and a real NATS server: clients that
//! crash or never join, a spawner that crashes, many Pis, expiry, cleanup,
//! Daily.co rooms against a local double of its REST API.
#![allow(clippy::unwrap_used)]

use std::process::{Child, Command};
use std::time::Duration;

use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use tests::{World, kill9, next, process_env};
use wire::v1::{
    ClientIssue, ClientIssueKind, ClientJoined, JoinRequest, PiPresence, PlayCommand,
    PlaybackEvent, PlaybackState, SessionReply,
};

const WAIT: Duration = Duration::from_secs(30);

async fn greeting_started(sub: &mut bus::async_nats::Subscriber, sid: &str) -> PlaybackEvent {
    next(sub, "the greeting to play", |e: &PlaybackEvent| {
        e.session_id == sid && e.state() == PlaybackState::Started
    })
    .await
}

fn sid_pid(body: &serde_json::Value) -> (String, i32) {
    (
        body["identifier"].as_str().unwrap().to_string(),
        body["pid"].as_i64().unwrap() as i32,
    )
}

async fn gone(pid: i32) {
    testkit::eventually(
        Duration::from_secs(15),
        "a client's process group to be gone",
        async || (!testkit::group_alive(pid)).then_some(()),
    )
    .await;
    assert!(
        testkit::pids_matching(&format!("cinema-mpv-{pid}-")).is_empty(),
        "mpv of client {pid} survived"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_is_restarted_and_the_session_goes_on() {
    let w = World::start().await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let mut issues = w.subscribe(SessionEvent::Client).await;
    let mut joins = w.subscribe(SessionEvent::Joined).await;
    let body = w.connect().await;
    let (sid, pid) = sid_pid(&body);
    greeting_started(&mut playback, &sid).await;

    // A join with a forged token is refused, and announces nothing.
    let forged = JoinRequest {
        session_id: sid.clone(),
        token: "v1.99999999999999.00".into(),
        pi_id: "x".into(),
        pid: 1,
    };
    let err = w
        .bus
        .request::<_, SessionReply>(&endpoints::rooms::JOIN, &forged)
        .await
        .unwrap_err();
    assert_eq!(err.remote_code(), Some(401), "{err}");

    kill9(pid);
    let issue: ClientIssue = next(&mut issues, "the crash report", |i: &ClientIssue| {
        i.session_id == sid
    })
    .await;
    assert_eq!(issue.kind(), ClientIssueKind::Exited);
    assert!(
        issue.detail.contains("exited on its own"),
        "{}",
        issue.detail
    );
    assert!(issue.restart_in_ms > 0);
    let rejoined: ClientJoined = next(
        &mut joins,
        "the restarted client's join",
        |j: &ClientJoined| j.session_id == sid && j.pid as i32 != pid,
    )
    .await;
    gone(pid).await;

    // The conversation continues with the new client, without a second greeting.
    let (code, _) = w
        .post(
            &format!("/api/sessions/{sid}/say"),
            Some(serde_json::json!({"text": "Where is the station?"})),
        )
        .await;
    assert_eq!(code, 202);
    next(
        &mut playback,
        "the answer from the new client",
        |e: &PlaybackEvent| {
            e.session_id == sid
                && e.command_id.starts_with("turn-")
                && e.state() == PlaybackState::Started
        },
    )
    .await;
    let status = w
        .status_until(&sid, "the answer in the record", |s| s["plays"] == 2)
        .await;
    assert_eq!(status["greetings"], 1, "{status}");
    assert_eq!(status["status"], "active");
    let (_, session) = w.get(&format!("/api/sessions/{sid}")).await;
    assert_eq!(session["pid"], rejoined.pid);

    // The first generation's start_pi_client finds the running client.
    let room_url = body["room_url"].as_str().unwrap();
    let (code, started) = w.post("/api/start_pi_client", Some(serde_json::json!({"roomUrl": room_url, "token": body["token"], "backendUrl": "http://x"}))).await;
    assert_eq!(code, 200, "{started}");
    assert_eq!(started["success"], true);
    assert_eq!(started["pid"], rejoined.pid);
    let (code, missing) = w
        .post(
            "/api/start_pi_client",
            Some(serde_json::json!({"roomUrl": "cinema://local/nope"})),
        )
        .await;
    assert_eq!(
        (code, &missing["success"]),
        (404, &serde_json::json!(false)),
        "{missing}"
    );

    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    gone(rejoined.pid as i32).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_spawner_leaves_no_orphans() {
    let w = World::start().await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let (sid, pid) = sid_pid(&w.connect().await);
    greeting_started(&mut playback, &sid).await;
    let spawner = w.stack().pid("pi-spawner").unwrap();
    kill9(spawner);
    // cinema up's supervisor starts a new spawner, which ends the old client.
    testkit::eventually(WAIT, "a new spawner", async || {
        w.stack().pid("pi-spawner").filter(|p| *p != spawner)
    })
    .await;
    gone(pid).await;
    let status = w
        .status_until(&sid, "the session to fail", |s| s["status"] == "failed")
        .await;
    assert_eq!(status["end_reason"], "the Pi's spawner restarted");
    // The Pi serves new sessions again.
    let (sid2, _) = sid_pid(&w.connect().await);
    greeting_started(&mut playback, &sid2).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_joins_is_restarted_then_fails_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("silent-client");
    std::fs::write(
        &script,
        "#!/bin/sh\necho 'waiting for nothing' >&2\nexec sleep 600\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let w = World::start_with(&[
        ("CINEMA_PI_SPAWNER_CLIENT_BIN", script.to_str().unwrap()),
        ("CINEMA_PI_SPAWNER_JOIN_TIMEOUT_S", "1"),
        ("CINEMA_PI_SPAWNER_MAX_RESTARTS", "1"),
        ("CINEMA_PI_SPAWNER_RESTART_BACKOFF_MS", "100"),
    ])
    .await;
    let mut issues = w.subscribe(SessionEvent::Client).await;
    let (sid, _) = sid_pid(&w.connect().await);
    let first: ClientIssue = next(&mut issues, "the join timeout", |i: &ClientIssue| {
        i.session_id == sid
    })
    .await;
    assert_eq!(first.kind(), ClientIssueKind::JoinTimeout);
    assert_eq!(first.detail, "the client did not join within 1 s");
    assert_eq!(first.stderr_tail, vec!["waiting for nothing".to_string()]);
    let last: ClientIssue = next(&mut issues, "giving up", |i: &ClientIssue| {
        i.session_id == sid && i.kind() == ClientIssueKind::GaveUp
    })
    .await;
    assert_eq!(last.restarts, 1);
    let status = w
        .status_until(&sid, "the session to fail", |s| s["status"] == "failed")
        .await;
    assert!(
        status["end_reason"]
            .as_str()
            .unwrap()
            .contains("did not join within 1 s; gave up after 1 restart(s)"),
        "{status}"
    );
    assert!(
        testkit::pids_matching(script.to_str().unwrap()).is_empty(),
        "no silent client survives"
    );
    // Never joined, never greeted.
    let plays: Vec<PlayCommand> = w
        .recorded(subjects::session(&sid, SessionEvent::Play))
        .await;
    assert!(plays.is_empty(), "{plays:?}");
    assert_eq!(status["greetings"], 0);
    w.stop().await;
}

struct ExtraSpawner(Child);

impl ExtraSpawner {
    fn start(w: &World, pi: &str, max_sessions: u32) -> ExtraSpawner {
        let state = w.data_dir().join(format!("state-{pi}"));
        let child = Command::new(testkit::bin("pi-spawner"))
            .env("NATS_URL", w.nats.url())
            .env("CINEMA_PI_ID", pi)
            .env("CINEMA_PI_SPAWNER_MAX_SESSIONS", max_sessions.to_string())
            .env("CINEMA_PI_SPAWNER_HEARTBEAT_S", "1")
            .env("CINEMA_PI_SPAWNER_STATE_DIR", state)
            .env("CINEMA_PI_SPAWNER_CLIENT_BIN", testkit::bin("pi-client"))
            .env("CINEMA_PI_CLIENT_VO", "null")
            .env("CINEMA_PI_CLIENT_AO", "null")
            .spawn()
            .unwrap();
        ExtraSpawner(child)
    }
}

impl Drop for ExtraSpawner {
    /// SIGTERM first, so the spawner stops its clients.
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        for _ in 0..250 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pis_three_sessions_each_command_reaches_its_own_pi() {
    let w = World::start_with(&[
        ("CINEMA_PI_SPAWNER_HEARTBEAT_S", "1"),
        ("CINEMA_ROOM_MANAGER_PI_STALE_S", "3"),
        ("CINEMA_ROOM_MANAGER_SWEEP_INTERVAL_S", "1"),
    ])
    .await;
    let mut pi_b = ExtraSpawner::start(&w, "pi-b", 2);
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let w = &w;
    let on = |pi: &'static str| async move {
        testkit::eventually(WAIT, "a session on a chosen Pi", async || {
            let (code, body) = w
                .post("/api/connect", Some(serde_json::json!({ "pi_id": pi })))
                .await;
            (code == 200).then_some(body)
        })
        .await
    };
    let s1 = on("test-pi").await;
    let s2 = on("pi-b").await;
    let s3 = on("pi-b").await;
    for (body, pi) in [(&s1, "test-pi"), (&s2, "pi-b"), (&s3, "pi-b")] {
        assert_eq!(body["pi_id"], pi);
        let (_, pid) = sid_pid(body);
        assert_eq!(
            process_env(pid, "CINEMA_PI_ID").as_deref(),
            Some(pi),
            "the client runs on its own Pi"
        );
    }
    // Over a Pi's limit, and on an unknown Pi: clear errors.
    let (code, full) = w
        .post(
            "/api/connect",
            Some(serde_json::json!({ "pi_id": "test-pi" })),
        )
        .await;
    assert_eq!(code, 429, "{full}");
    assert!(
        full["error"].as_str().unwrap().contains("its limit"),
        "{full}"
    );
    let (code, unknown) = w
        .post("/api/connect", Some(serde_json::json!({ "pi_id": "pi-z" })))
        .await;
    // A Pi that is not online is the caller's to fix (another Pi): 409,
    // and the message names it.
    assert_eq!(code, 409, "{unknown}");
    assert!(
        unknown["error"]
            .as_str()
            .unwrap()
            .contains("\"pi-z\" is not online"),
        "{unknown}"
    );

    let sids: Vec<String> = [&s1, &s2, &s3].iter().map(|b| sid_pid(b).0).collect();
    // The three greetings play in any order.
    let mut greeted = std::collections::HashSet::new();
    while greeted.len() < sids.len() {
        let e: PlaybackEvent = next(
            &mut playback,
            "every greeting to play",
            |e: &PlaybackEvent| sids.contains(&e.session_id) && e.state() == PlaybackState::Started,
        )
        .await;
        greeted.insert(e.session_id);
    }
    let presence = w.bus.kv(bus::names::PIS_BUCKET).await.unwrap();
    let (b, _) = bus::kv_get::<PiPresence>(&presence, "pi-b")
        .await
        .unwrap()
        .unwrap();
    let mut on_b = b.sessions.clone();
    on_b.sort();
    let mut want = vec![sids[1].clone(), sids[2].clone()];
    want.sort();
    assert_eq!(on_b, want);

    // A line in session 2 is played by session 2's client, once.
    let (code, _) = w
        .post(
            &format!("/api/sessions/{}/say", sids[1]),
            Some(serde_json::json!({"text": "Where is the station?"})),
        )
        .await;
    assert_eq!(code, 202);
    let answer = next(&mut playback, "the answer", |e: &PlaybackEvent| {
        e.session_id == sids[1]
            && e.command_id.starts_with("turn-")
            && e.state() == PlaybackState::Started
    })
    .await;
    // Any stray start of it in another session came before the answer's
    // own end (the clip plays for seconds): wait for that, then look.
    next(&mut playback, "the answer's end", |e: &PlaybackEvent| {
        e.command_id == answer.command_id && e.state() != PlaybackState::Started
    })
    .await;
    for sid in &sids {
        let events: Vec<PlaybackEvent> = w
            .recorded(subjects::session(sid, SessionEvent::Playback))
            .await;
        let played = events
            .iter()
            .filter(|e| e.command_id == answer.command_id && e.state() == PlaybackState::Started)
            .count();
        assert_eq!(played, usize::from(sid == &sids[1]), "session {sid}");
    }

    // Pi loss: pi-b and its clients vanish; its sessions end, the other goes on.
    let pids_b = [sid_pid(&s2).1, sid_pid(&s3).1];
    let _ = pi_b.0.kill();
    let _ = pi_b.0.wait();
    for pid in pids_b {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
    for sid in &sids[1..] {
        let s = w
            .status_until(sid, "the session of the lost Pi to end", |s| {
                s["status"] == "ended"
            })
            .await;
        assert_eq!(s["end_reason"], "Pi pi-b went offline");
    }
    let (_, s1_status) = w.get(&format!("/conversation-status/{}", sids[0])).await;
    assert_eq!(s1_status["status"], "active");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_rooms_against_the_double() {
    let daily = testkit::daily::DailyDouble::start().await;
    let w = World::start_with(&[
        ("DAILY_API_KEY", "test-key"),
        ("DAILY_API_URL", daily.url()),
        ("CINEMA_ROOM_MANAGER_SWEEP_INTERVAL_S", "1"),
    ])
    .await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let body = w.connect().await;
    let (sid, pid) = sid_pid(&body);
    let room = format!("cinema-{sid}");
    assert_eq!(body["room_url"], format!("https://cinema.daily.co/{room}"));
    assert_eq!(body["token"], "daily-meeting-token-1");
    let reqs = daily.requests();
    let create = reqs
        .iter()
        .find(|r| r.method == "POST" && r.path == "/v1/rooms")
        .unwrap();
    assert_eq!(create.auth, "Bearer test-key");
    assert_eq!(create.body["name"], room.as_str());
    assert_eq!(create.body["privacy"], "private");
    let exp = create.body["properties"]["exp"].as_i64().unwrap();
    assert!(
        (exp - wire::now_ms() / 1000 - 3600).abs() < 30,
        "room expires with the session: {exp}"
    );
    let token = reqs
        .iter()
        .find(|r| r.path == "/v1/meeting-tokens")
        .unwrap();
    assert_eq!(token.body["properties"]["room_name"], room.as_str());
    // The client gets the first generation's variables; audio still goes over NATS.
    assert_eq!(
        process_env(pid, "DAILY_ROOM_URL").as_deref(),
        body["room_url"].as_str()
    );
    assert_eq!(
        process_env(pid, "DAILY_TOKEN").as_deref(),
        Some("daily-meeting-token-1")
    );
    greeting_started(&mut playback, &sid).await;

    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    assert!(
        daily
            .requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == format!("/v1/rooms/{room}"))
    );
    assert!(daily.rooms().is_empty());

    // The sweep deletes an expired room of ours and leaves others alone.
    let http = reqwest::Client::new();
    for (name, exp) in [("cinema-stale", 1), ("someone-elses", 1)] {
        http.post(format!("{}/rooms", daily.url()))
            .bearer_auth("k")
            .json(&serde_json::json!({"name": name, "properties": {"exp": exp}}))
            .send()
            .await
            .unwrap();
    }
    testkit::eventually(WAIT, "the sweep to delete the expired room", async || {
        (daily.rooms() == vec!["someone-elses".to_string()]).then_some(())
    })
    .await;

    // Daily errors are clear session errors.
    daily.fail("/v1/rooms", 500, "boom");
    let (code, err) = w.post("/api/connect", None).await;
    // A 5xx says that something behind the gateway failed, never the
    // third party's own text (room-manager's log has it).
    assert_eq!(code, 502, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("failed") && !err.to_string().contains("boom"),
        "{err}"
    );
    daily.heal();
    daily.fail("/v1/meeting-tokens", 401, "invalid api key");
    let (code, err) = w.post("/api/connect", None).await;
    assert_eq!(code, 502, "{err}");
    assert!(!err.to_string().contains("invalid api key"), "{err}");
    assert_eq!(
        daily.rooms(),
        vec!["someone-elses".to_string()],
        "the half-made room was deleted"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_expire_cleanup_removes_state_and_dead_services_restart() {
    let w = World::start_with(&[
        ("CINEMA_ROOM_MANAGER_IDLE_TIMEOUT_S", "3"),
        ("CINEMA_ROOM_MANAGER_SWEEP_INTERVAL_S", "1"),
    ])
    .await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let (sid, pid) = sid_pid(&w.connect().await);
    greeting_started(&mut playback, &sid).await;
    let status = w
        .status_until(&sid, "the idle session to end", |s| s["status"] == "ended")
        .await;
    assert_eq!(status["end_reason"], "idle for 3 s");
    gone(pid).await;

    // Cleanup removes every key the session left.
    w.clean_up(&sid).await;
    // No record any more: the first generation's answer for an id it does
    // not know.
    let (code, gone) = w.get(&format!("/conversation-status/{sid}")).await;
    assert_eq!(
        (code, gone["status"].as_str()),
        (200, Some("initializing")),
        "{gone}"
    );
    assert_eq!(w.get(&format!("/api/sessions/{sid}")).await.0, 404);
    for bucket in [
        bus::names::SESSIONS_BUCKET,
        bus::names::STATUS_BUCKET,
        bus::names::CONVERSATIONS_BUCKET,
    ] {
        let kv = w.bus.kv(bucket).await.unwrap();
        testkit::eventually(
            Duration::from_secs(10),
            &format!("no key left in {bucket}"),
            async || (!bus::kv_keys(&kv).await.unwrap().contains(&sid)).then_some(()),
        )
        .await;
    }

    // cinema up restarts a service that dies, and the system keeps working.
    let (_, before) = w.get("/health").await;
    let old = w.stack().pid("status-store").unwrap();
    kill9(old);
    testkit::eventually(WAIT, "status-store to come back", async || {
        let (code, h) = w.get("/health").await;
        (code == 200
            && h["services"]["status-store"]["instances"]
                != before["services"]["status-store"]["instances"])
            .then_some(())
    })
    .await;
    let (sid2, _) = sid_pid(&w.connect().await);
    greeting_started(&mut playback, &sid2).await;
    w.status_until(&sid2, "the new session's record", |s| s["greetings"] == 1)
        .await;
    w.stop().await;
}

/// A rolling restart (SIGTERM, as systemd or `cinema up` stops a service)
/// of the services that consume the event stream loses no work: a line said
/// while the director is down is answered when it is back, and the record
/// catches up with what happened while status-store was down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_loses_no_turn() {
    let w = World::start().await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let (sid, _) = sid_pid(&w.connect().await);
    greeting_started(&mut playback, &sid).await;
    let lines = ["Where is the station?", "Is this seat taken?"];
    for (i, service) in ["llm", "status-store"].into_iter().enumerate() {
        let (_, before) = w.get("/health").await;
        let pid = w.stack().pid(service).unwrap();
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        );
        testkit::eventually(WAIT, &format!("{service} to stop"), async || {
            (!testkit::group_alive(pid)).then_some(())
        })
        .await;
        // Said while the service is down.
        let (code, body) = w
            .post(
                &format!("/api/sessions/{sid}/say"),
                Some(serde_json::json!({"text": lines[i]})),
            )
            .await;
        assert_eq!(code, 202, "{body}");
        testkit::eventually(WAIT, &format!("{service} to come back"), async || {
            let (code, h) = w.get("/health").await;
            (code == 200
                && h["services"][service]["instances"] != before["services"][service]["instances"])
                .then_some(())
        })
        .await;
        next(&mut plays, "the answer to the line", |p: &PlayCommand| {
            p.session_id == sid && !p.greeting
        })
        .await;
    }
    let status = w
        .status_until(&sid, "both answers in the record", |s| s["plays"] == 3)
        .await;
    assert_eq!(status["greetings"], 1, "{status}");
    w.stop().await;
}

/// Play commands wait for their Pi: one published while the Pi's client
/// cannot answer (frozen, as a cut link leaves it) plays once when it can,
/// however often it was handed over or published; one the Pi cannot take
/// within its bound is reported expired, with the reason, and never plays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn play_commands_wait_for_their_pi_play_once_and_expire_after_their_bound() {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    let w = World::start_with(&[("CINEMA_ROOM_MANAGER_PLAY_EXPIRY_MS", "6000")]).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let (sid, pid) = sid_pid(&w.connect().await);
    let greeting = greeting_started(&mut playback, &sid).await;
    let client = Pid::from_raw(pid);
    let play = |id: &str| PlayCommand {
        session_id: sid.clone(),
        command_id: id.into(),
        clip_id: greeting.clip_id.clone(),
        greeting: false,
        at_ms: wire::now_ms(),
    };
    let publish = async |cmd: &PlayCommand, msg_id: &str| {
        w.bus
            .publish_durable(
                subjects::pi_session(tests::SIM_PI, &sid, SessionEvent::Play),
                cmd,
                msg_id,
            )
            .await
            .unwrap();
    };

    // Frozen for 3 s: the command, published by two services (two message
    // ids), waits and plays once.
    kill(client, Signal::SIGSTOP).unwrap();
    let late = play("late-1");
    publish(&late, "late-1").await;
    publish(&late, "late-1-again").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(client, Signal::SIGCONT).unwrap();
    let started: PlaybackEvent = next(
        &mut playback,
        "the late command to play",
        |e: &PlaybackEvent| e.command_id == "late-1" && e.state() == PlaybackState::Started,
    )
    .await;
    assert_eq!(started.session_id, sid);

    // Frozen past the bound: reported expired (by the hub, while the Pi is
    // still frozen), and never played once the Pi is back.
    kill(client, Signal::SIGSTOP).unwrap();
    publish(&play("lost-1"), "lost-1").await;
    let expired: PlaybackEvent = next(
        &mut playback,
        "the command to expire",
        |e: &PlaybackEvent| e.command_id == "lost-1",
    )
    .await;
    kill(client, Signal::SIGCONT).unwrap();
    assert_eq!(expired.state(), PlaybackState::Expired, "{expired:?}");
    assert!(
        expired.error.contains("did not take it"),
        "{}",
        expired.error
    );

    // A later command plays; by then nothing else was played. (A report
    // sent again after a lost ack reaches core subscribers twice, the
    // same; a second play would be another start, at another time.)
    publish(&play("after-1"), "after-1").await;
    let mut starts: std::collections::HashMap<String, std::collections::HashSet<i64>> =
        std::collections::HashMap::from([(
            "late-1".to_string(),
            std::collections::HashSet::from([started.at_ms]),
        )]);
    loop {
        let e: PlaybackEvent = next(
            &mut playback,
            "the later command to play",
            |e: &PlaybackEvent| e.session_id == sid,
        )
        .await;
        if e.state() == PlaybackState::Started {
            starts
                .entry(e.command_id.clone())
                .or_default()
                .insert(e.at_ms);
        }
        if e.command_id == "after-1" && e.state() == PlaybackState::Started {
            break;
        }
    }
    assert!(
        !starts.contains_key("lost-1"),
        "the expired command played: {starts:?}"
    );
    assert_eq!(
        starts["late-1"].len(),
        1,
        "the late command played twice: {starts:?}"
    );
    let status = w
        .status_until(&sid, "the expiry in the record", |s| {
            s["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("never played"))
        })
        .await;
    assert_eq!(status["status"], "active", "{status}");
    w.stop().await;
}
