//! The shipped NATS configuration on real servers: one user per role and per
//! Pi with subject permissions, a Pi's leaf server carrying a whole session,
//! and TLS with a certificate made here.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::async_nats;
use bus::endpoints;
use bus::permissions::{password_env, pi_inbox_prefix, pi_user};
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use testkit::NatsServer;
use tests::{SIM_PI, World, next};
use wire::v1::{PlayCommand, PlaybackEvent, PlaybackState};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

const ROLES: [&str; 3] = ["services", "status-store", "gateway"];

fn password(user: &str) -> String {
    format!("pw-{user}-7f3a")
}

/// A hub config folder: the shipped hub.conf (and hub-tls.conf), an
/// accounts.conf made by `cinema nats-accounts` for these Pis, and a
/// test.conf that includes `base` with a free port for leaf connections.
struct Hub {
    dir: tempfile::TempDir,
    leaf_port: u16,
    env: Vec<(String, String)>,
}

impl Hub {
    fn new(pis: &[&str], base: &str, extra: &str) -> Hub {
        let dir = tempfile::tempdir().unwrap();
        for f in ["hub.conf", "hub-tls.conf"] {
            std::fs::copy(root().join("nats").join(f), dir.path().join(f)).unwrap();
        }
        let mut cmd = Command::new(testkit::bin("cinema"));
        cmd.arg("nats-accounts");
        for pi in pis {
            cmd.args(["--pi", pi]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::fs::write(dir.path().join("accounts.conf"), &out.stdout).unwrap();
        let leaf_port = testkit::free_port();
        std::fs::write(
            dir.path().join("test.conf"),
            format!(
                "include {base}\nleafnodes {{ port: {leaf_port} {extra} }}\nhttp: \"127.0.0.1:-1\"\njetstream {{ store_dir: \"{}\", domain: {} }}\n",
                dir.path().join("store").display(),
                bus::names::JS_DOMAIN
            ),
        )
        .unwrap();
        let mut env: Vec<(String, String)> = ROLES
            .iter()
            .map(|r| (password_env(r), password(r)))
            .collect();
        for pi in pis {
            let user = pi_user(pi);
            env.push((password_env(&user), password(&user)));
        }
        Hub {
            dir,
            leaf_port,
            env,
        }
    }

    fn start(&self, more_env: &[(&str, &str)]) -> NatsServer {
        let mut env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        env.extend_from_slice(more_env);
        NatsServer::start_configured(&self.dir.path().join("test.conf"), &env)
    }

    /// Pi `pi`'s own server: the shipped leaf.conf, linked to this hub as
    /// the Pi's NATS user.
    fn leaf(&self, pi: &str) -> NatsServer {
        let user = pi_user(pi);
        let link = format!(
            "nats-leaf://{user}:{}@127.0.0.1:{}",
            password(&user),
            self.leaf_port
        );
        NatsServer::start_configured(
            &root().join("nats/leaf.conf"),
            &[("CINEMA_NATS_HUB_LEAF_URL", &link)],
        )
    }
}

/// A raw connection as `user` that records the server's errors (permission
/// violations arrive that way).
async fn connect_as(
    nats: &NatsServer,
    user: &str,
    inbox: Option<String>,
) -> (async_nats::Client, Arc<Mutex<Vec<String>>>) {
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = errors.clone();
    let url = nats.url_as(user, &password(user));
    let mut options = bus::connect_options(user, &url)
        .await
        .unwrap()
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    seen.lock().unwrap().push(e.to_string());
                }
            }
        });
    if let Some(prefix) = inbox {
        options = options.custom_inbox_prefix(prefix);
    }
    let client = options.connect(url).await.unwrap();
    (client, errors)
}

/// Waits until the server has refused `subject` to this connection.
async fn refused(errors: &Arc<Mutex<Vec<String>>>, subject: &str) {
    let wanted = format!("\"{}\"", subject.to_lowercase());
    testkit::eventually(
        Duration::from_secs(5),
        &format!("the server to refuse {subject}"),
        async || {
            let errors = errors.lock().unwrap();
            errors
                .iter()
                .any(|e| {
                    e.to_lowercase().contains("permissions violation")
                        && e.to_lowercase().contains(&wanted)
                })
                .then_some(())
        },
    )
    .await;
}

#[test]
fn the_shipped_accounts_are_what_the_code_generates() {
    let out = Command::new(testkit::bin("cinema"))
        .args(["nats-accounts", "--pi", "local-pi"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let shipped = std::fs::read_to_string(root().join("nats/accounts.conf")).unwrap();
    assert_eq!(
        shipped,
        String::from_utf8(out.stdout).unwrap(),
        "nats/accounts.conf is stale: run `cinema nats-accounts --pi local-pi > nats/accounts.conf`"
    );
    // A bad Pi id is refused with a clear line, not written into a config.
    let bad = Command::new(testkit::bin("cinema"))
        .args(["nats-accounts", "--pi", "a.b"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("pi id"));
}

#[tokio::test]
async fn each_role_and_pi_may_do_only_its_own_part() {
    let hub = Hub::new(&["pi-a", "pi-b"], "hub.conf", "");
    let nats = hub.start(&[]);
    // status-store may make and write the status bucket.
    let admin = nats
        .bus_at(
            &nats.url_as("status-store", &password("status-store")),
            "admin",
        )
        .await;
    let (watcher, _) = connect_as(&nats, "services", None).await;
    let mut seen = watcher.subscribe(">").await.unwrap();
    watcher.flush().await.unwrap();

    // Nobody without a password.
    let anonymous = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connect(nats.url())
        .await;
    assert!(anonymous.is_err(), "an anonymous client was let in");

    // A Pi: its own session's events go through, nothing else does.
    let (pi_a, a_errors) = connect_as(&nats, &pi_user("pi-a"), Some(pi_inbox_prefix("pi-a"))).await;
    let own = subjects::pi_session("pi-a", "s1", SessionEvent::Playback);
    let foreign = [
        subjects::pi_session("pi-b", "s2", SessionEvent::Playback),
        subjects::utterance("pi-b", "s2"),
        subjects::pi_session("pi-a", "s1", SessionEvent::Play),
        subjects::pi_delivery("pi-a", "s1"),
        subjects::session("s1", SessionEvent::Transcript),
        subjects::rooms::CREATE.to_string(),
        format!("$KV.{}.s1", bus::names::STATUS_BUCKET),
        format!("$KV.{}.pi-b", bus::names::PIS_BUCKET),
    ];
    for subject in &foreign {
        pi_a.publish(subject.clone(), "forged".into())
            .await
            .unwrap();
    }
    pi_a.publish(own.clone(), "mine".into()).await.unwrap();
    pi_a.flush().await.unwrap();
    for subject in &foreign {
        refused(&a_errors, subject).await;
    }
    // It may not listen to another Pi's commands, nor to everything.
    for subject in [
        subjects::pi_delivery("pi-b", "*"),
        "cinema.>".to_string(),
        "_INBOX.>".to_string(),
    ] {
        let _sub = pi_a.subscribe(subject.clone()).await.unwrap();
        pi_a.flush().await.unwrap();
        refused(&a_errors, &subject).await;
    }
    // What arrived: only its own event.
    let mut arrived = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), seen.next()).await {
        if m.subject.starts_with("cinema.") || m.subject.starts_with("$KV.") {
            arrived.push(m.subject.to_string());
        }
    }
    assert_eq!(arrived, vec![own.clone()], "only the Pi's own event passes");

    // Services play clips on a Pi; the Pi hears its own commands only (on a
    // connection of its own: the refusals above closed nothing, but keep the
    // check apart from them).
    let (pi_a, _) = connect_as(&nats, &pi_user("pi-a"), Some(pi_inbox_prefix("pi-a"))).await;
    let (services, s_errors) = connect_as(&nats, "services", None).await;
    let mut a_plays = pi_a
        .subscribe(subjects::pi_delivery("pi-a", "*"))
        .await
        .unwrap();
    pi_a.flush().await.unwrap();
    // (Published until heard: the subscription reaches the server's
    // interest graph asynchronously.)
    let mut heard = Vec::new();
    for _ in 0..25 {
        for pi in ["pi-b", "pi-a"] {
            services
                .publish(subjects::pi_delivery(pi, "s1"), pi.into())
                .await
                .unwrap();
        }
        services.flush().await.unwrap();
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), a_plays.next()).await
        {
            heard.push(m.payload.clone());
            break;
        }
    }
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(300), a_plays.next()).await {
        heard.push(m.payload.clone());
    }
    assert!(!heard.is_empty(), "the Pi never heard its own command");
    assert!(heard.iter().all(|p| p.as_ref() == b"pi-a"), "{heard:?}");
    // Services may not write the status bucket; status-store may.
    let status_write = format!("$KV.{}.s1", bus::names::STATUS_BUCKET);
    services
        .publish(status_write.clone(), "x".into())
        .await
        .unwrap();
    services.flush().await.unwrap();
    refused(&s_errors, &status_write).await;
    let store = admin.ensure_status_bucket().await.unwrap();
    store.put("s1", "by status-store".into()).await.unwrap();

    // The gateway may not play clips.
    let (gateway, g_errors) = connect_as(&nats, "gateway", None).await;
    let play = subjects::pi_session("pi-a", "s1", SessionEvent::Play);
    let deliver = subjects::pi_delivery("pi-a", "s1");
    gateway.publish(play.clone(), "x".into()).await.unwrap();
    gateway.publish(deliver.clone(), "x".into()).await.unwrap();
    gateway.flush().await.unwrap();
    refused(&g_errors, &play).await;
    refused(&g_errors, &deliver).await;
}

/// Per-service NATS users for a [`World`] on the hub; the Pi's programs on
/// the leaf server at `pi_url`.
fn users(nats: &NatsServer, pi_url: &str) -> HashMap<String, HashMap<String, String>> {
    let url = |user: &str| nats.url_as(user, &password(user));
    let mut by_service = HashMap::new();
    for service in ["room-manager", "llm", "stt", "clip-selector"] {
        by_service.insert(service.to_string(), url("services"));
    }
    by_service.insert("status-store".to_string(), url("status-store"));
    by_service.insert("dashboard-gateway".to_string(), url("gateway"));
    let mut env: HashMap<String, HashMap<String, String>> = by_service
        .into_iter()
        .map(|(s, u)| (s, HashMap::from([("NATS_URL".to_string(), u)])))
        .collect();
    env.insert(
        "pi-spawner".to_string(),
        HashMap::from([
            ("NATS_URL".to_string(), pi_url.to_string()),
            ("NATS_INBOX_PREFIX".to_string(), pi_inbox_prefix(SIM_PI)),
            (
                "NATS_JS_DOMAIN".to_string(),
                bus::names::JS_DOMAIN.to_string(),
            ),
        ]),
    );
    env
}

#[tokio::test]
async fn a_session_runs_through_the_pis_leaf_server_with_every_role_confined() {
    let hub = Hub::new(&[SIM_PI], "hub.conf", "");
    let nats = hub.start(&[]);
    let leaf = hub.leaf(SIM_PI);
    let test_url = nats.url_as("status-store", &password("status-store"));
    let env = users(&nats, &leaf.url());
    let mut w = World::start_on(nats, &test_url, &[], env).await;
    let mut plays = w.subscribe(SessionEvent::Play).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;

    let body = w.connect().await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    let greeting: PlayCommand = next(&mut plays, "the greeting", |p: &PlayCommand| {
        p.session_id == sid
    })
    .await;
    next(
        &mut playback,
        "the greeting on the Pi",
        |e: &PlaybackEvent| {
            e.command_id == greeting.command_id && e.state() == PlaybackState::Finished
        },
    )
    .await;
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
    next(
        &mut playback,
        "the answer on the Pi",
        |e: &PlaybackEvent| {
            e.command_id == answer.command_id && e.state() == PlaybackState::Started
        },
    )
    .await;
    // The hub goes away and comes back (a WAN drop, seen from the Pi): the
    // Pi's client stays up on its leaf server and the conversation goes on.
    let pid = body["pid"].as_i64().unwrap() as i32;
    w.nats.stop();
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        testkit::group_alive(pid),
        "the Pi's client died with the link"
    );
    w.nats.restart();
    // The link is back once the Pi's spawner answers through it again.
    // (A command published while the link is down is not delivered: the
    // client hears play commands on core NATS.)
    testkit::eventually(
        Duration::from_secs(30),
        "the Pi to answer through its leaf link again",
        async || {
            w.bus
                .request::<_, wire::v1::AudioDevices>(
                    &endpoints::pi_devices(SIM_PI),
                    &wire::v1::AudioDevicesRequest {},
                )
                .await
                .ok()
        },
    )
    .await;
    let again = testkit::eventually(
        Duration::from_secs(30),
        "a line to be taken after the hub came back",
        async || {
            let (code, _) = w
                .post(
                    &format!("/api/sessions/{sid}/say"),
                    Some(serde_json::json!({"text": "Is this seat taken?"})),
                )
                .await;
            (code == 202).then_some(())
        },
    );
    again.await;
    let second: PlayCommand = next(&mut plays, "the second answer", |p: &PlayCommand| {
        p.session_id == sid && !p.greeting && p.command_id != answer.command_id
    })
    .await;
    next(
        &mut playback,
        "the second answer on the Pi",
        |e: &PlaybackEvent| {
            e.command_id == second.command_id && e.state() == PlaybackState::Started
        },
    )
    .await;
    assert!(testkit::group_alive(pid), "the same client plays on");
    // The record (written by status-store only) has the whole conversation.
    let status = w
        .status_until(&sid, "the answers in the record", |s| s["plays"] == 3)
        .await;
    assert_eq!(status["greetings"], 1, "{status}");
    assert!(
        status.to_string().contains("The station is down the road"),
        "{status}"
    );
    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    drop(leaf);
}

/// NATS lets a Pi publish under its own prefix only, but for any session
/// id: stt and status-store take a Pi's utterances and reports only for
/// the sessions room-manager assigned to it. Another Pi (its own user on
/// the per-role configuration) speaking into this Pi's session is heard by
/// nobody; this Pi, right after, is.
#[tokio::test]
async fn a_pi_speaks_only_into_its_own_sessions() {
    let hub = Hub::new(&[SIM_PI, "pi-b"], "hub.conf", "");
    let nats = hub.start(&[]);
    // The session's Pi on its own leaf server, linked as itself.
    let leaf = hub.leaf(SIM_PI);
    let test_url = nats.url_as("status-store", &password("status-store"));
    let env = users(&nats, &leaf.url());
    let w = World::start_on(nats, &test_url, &[], env).await;
    let mut playback = w.subscribe(SessionEvent::Playback).await;
    let mut transcripts = w.subscribe(SessionEvent::Transcript).await;

    let body = w.connect().await;
    let sid = body["identifier"].as_str().unwrap().to_string();
    next(&mut playback, "the greeting played", |e: &PlaybackEvent| {
        e.session_id == sid && e.state() == PlaybackState::Finished
    })
    .await;

    // Pi B, as itself: an utterance and a failed playback for A's session,
    // under its own prefix (NATS allows both).
    let (pi_b, b_errors) =
        connect_as(&w.nats, &pi_user("pi-b"), Some(pi_inbox_prefix("pi-b"))).await;
    let pcm = tests::speech("Where is the station?");
    let forged = tests::utterance(&sid, "forged-1", &pcm);
    let (headers, payload) = bus::encode(&forged);
    pi_b.publish_with_headers(subjects::utterance("pi-b", &sid), headers, payload)
        .await
        .unwrap();
    let forged_report = subjects::pi_session("pi-b", &sid, SessionEvent::Playback);
    let (headers, payload) = bus::encode(&PlaybackEvent {
        session_id: sid.clone(),
        command_id: "forged-command".into(),
        clip_id: "forged-clip".into(),
        state: PlaybackState::Failed as i32,
        error: "FORGED".into(),
        ..Default::default()
    });
    pi_b.publish_with_headers(forged_report.clone(), headers, payload)
        .await
        .unwrap();
    pi_b.flush().await.unwrap();
    assert!(
        b_errors.lock().unwrap().is_empty(),
        "NATS let B publish: {:?}",
        b_errors.lock().unwrap()
    );

    // The session's own Pi says the same line after it (on its leaf).
    let pi_a = async_nats::connect(leaf.url()).await.unwrap();
    let own = tests::utterance(&sid, "own-1", &pcm);
    let (headers, payload) = bus::encode(&own);
    pi_a.publish_with_headers(subjects::utterance(SIM_PI, &sid), headers, payload)
        .await
        .unwrap();
    pi_a.flush().await.unwrap();

    // Its line is transcribed; B's never was (stt refuses before Whisper,
    // so B's, queued first, was settled by then).
    let seen = std::cell::RefCell::new(Vec::new());
    let heard: wire::v1::Transcript = next(
        &mut transcripts,
        "the own Pi's line",
        |t: &wire::v1::Transcript| {
            seen.borrow_mut().push(t.utterance_id.clone());
            t.utterance_id == "own-1"
        },
    )
    .await;
    let seen = seen.into_inner();
    assert!(heard.text.to_lowercase().contains("station"), "{heard:?}");
    assert!(
        !seen.iter().any(|u| u == "forged-1"),
        "B's line was transcribed: {seen:?}"
    );
    // status-store applies events in stream order: once the transcript
    // (after B's report in the stream) is in the record, B's report was
    // settled, and it is not in the record.
    let events = w
        .bus
        .jetstream()
        .get_stream(bus::names::EVENTS_STREAM)
        .await
        .unwrap();
    let forged_seq = events
        .get_last_raw_message_by_subject(&forged_report)
        .await
        .unwrap()
        .sequence;
    let transcript_seq = events
        .get_last_raw_message_by_subject(&subjects::session(&sid, SessionEvent::Transcript))
        .await
        .unwrap()
        .sequence;
    assert!(transcript_seq > forged_seq);
    let record = testkit::eventually(
        Duration::from_secs(20),
        "the line in the record",
        async || {
            let r: wire::v1::StatusRecord = w
                .bus
                .request(
                    &endpoints::status::GET,
                    &wire::v1::StatusRequest {
                        session_id: sid.clone(),
                    },
                )
                .await
                .ok()?;
            r.applied_sequences.contains(&transcript_seq).then_some(r)
        },
    )
    .await;
    assert!(
        !record.applied_sequences.contains(&forged_seq),
        "{record:?}"
    );
    assert!(!record.last_error.contains("FORGED"), "{record:?}");
    let (code, _) = w.post(&format!("/api/sessions/{sid}/end"), None).await;
    assert_eq!(code, 200);
    drop(leaf);
}

#[tokio::test]
async fn tls_with_a_self_signed_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = tests::certificates(certs.path());
    let hub = Hub::new(&["pi-a"], "hub-tls.conf", "");
    let nats = hub.start(&[
        ("CINEMA_NATS_TLS_CERT", cert.to_str().unwrap()),
        ("CINEMA_NATS_TLS_KEY", key.to_str().unwrap()),
    ]);
    let url = format!(
        "tls://services:{}@127.0.0.1:{}",
        password("services"),
        nats.port()
    );
    // A program of ours trusts the server through NATS_CA.
    let tap = |with_ca: bool| {
        let mut cmd = tokio::process::Command::new(testkit::bin("cinema"));
        cmd.args(["tap", "cinema.session.s1.ended", "--count", "1"])
            .env("NATS_URL", &url)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if with_ca {
            cmd.env("NATS_CA", &ca);
        } else {
            cmd.env_remove("NATS_CA");
        }
        cmd.spawn().unwrap()
    };
    // Without the CA the certificate is not trusted.
    let untrusted = tokio::time::timeout(Duration::from_secs(20), tap(false).wait_with_output())
        .await
        .expect("tap without the CA did not give up")
        .unwrap();
    assert!(!untrusted.status.success());
    let why = String::from_utf8_lossy(&untrusted.stderr).to_lowercase();
    assert!(why.contains("cannot connect"), "{why}");

    let mut trusted = tap(true);
    let mut err = tokio::io::BufReader::new(trusted.stderr.take().unwrap());
    let mut line = String::new();
    tokio::time::timeout(
        Duration::from_secs(20),
        tokio::io::AsyncBufReadExt::read_line(&mut err, &mut line),
    )
    .await
    .expect("tap did not connect over TLS")
    .unwrap();
    assert!(line.contains("watching"), "{line}");
    // This test's own client over TLS, trusting the same CA.
    let client = bus::connect_options("test", &url)
        .await
        .unwrap()
        .add_root_certificates(ca.clone())
        .require_tls(true)
        .connect(&url)
        .await
        .unwrap();
    client
        .publish("cinema.session.s1.ended", "over TLS".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let out = tokio::time::timeout(Duration::from_secs(20), trusted.wait_with_output())
        .await
        .expect("tap did not print the message")
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("over TLS"));
    // A plain-text client is turned away.
    let plain = async_nats::ConnectOptions::new()
        .max_reconnects(1)
        .connect(format!(
            "nats://services:{}@127.0.0.1:{}",
            password("services"),
            nats.port()
        ))
        .await;
    assert!(plain.is_err(), "a client without TLS was let in");
}
