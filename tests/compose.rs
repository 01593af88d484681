//! The hub under Docker Compose, for real: the images built with no
//! registry (`scripts/images`: bases from Debian's packages, then the
//! project's Dockerfile), `docker compose up` of the whole hub with a Pi as
//! its own host (`--profile demo-pi`: a Debian 13 container on its own
//! network, installed by deploy/install-pi, reaching the hub only through
//! its NATS leaf link and the media URL), a conversation across them, a
//! reboot with the volumes kept, and the NATS container killed mid-session.
//! Each test is its own compose project on free ports, removed with its
//! volumes at the end.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::json;
use tests::hub::{ANSWER, Hub, LINE, PI, READY, container_pid, play_command, playback_of, played};
use wire::v1::{PlaybackEvent, PlaybackState};

/// A visitor's line as a WAV file (espeak-ng, 0.3 s of silence before it
/// and 0.5 s after), as the Pi host's microphone input plays it.
fn visitor_wav(dir: &std::path::Path, text: &str) -> std::path::PathBuf {
    let (pcm, rate) = synth::speak(text, "en-us").unwrap();
    let mut padded = vec![0i16; rate as usize * 3 / 10];
    padded.extend(&pcm);
    padded.extend(vec![0i16; rate as usize / 2]);
    let wav = dir.join("visitor.wav");
    synth::write_wav(&wav, &padded, rate).unwrap();
    wav
}

/// The (major, minor) version of the demo Pi host's mpv.
fn mpv_version(hub: &Hub) -> (u32, u32) {
    let out = hub.compose(&[
        "--profile",
        "demo-pi",
        "exec",
        "-T",
        "demo-pi",
        "mpv",
        "--version",
    ]);
    // `mpv 0.35.1 Copyright …`, `mpv v0.40.0 Copyright …`
    let numbers: Vec<u32> = out
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .trim_start_matches('v')
        .split(|c: char| !c.is_ascii_digit())
        .take(2)
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [major, minor] => (major, minor),
        _ => panic!("no mpv version in {out}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_under_compose_with_a_pi_host() {
    let mut hub = Hub::new();

    // From nothing: the hub and a Pi host come up and are ready.
    hub.up();
    let health = hub.ready(READY).await;
    assert_eq!(health["nats"]["status"], "ok", "{health}");
    let bus = hub.bus().await;
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;

    // Given the hub's address as the Pi reaches it, the Pis page has no
    // warning about media.
    let (_, pis) = hub.get("/api/pis").await;
    assert_eq!(
        pis["pis"][0]["media_warning"],
        serde_json::Value::Null,
        "{pis}"
    );

    // The Pi host is a current Raspberry Pi OS: Debian 13's mpv (0.38+,
    // where loadfile takes an index before its options).
    let version = mpv_version(&hub);
    assert!(version >= (0, 38), "the Pi host's mpv is {version:?}");

    // A session on the Pi host: the greeting plays on its mpv; a typed line
    // is answered with its clip, played there to its end.
    let sid = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the greeting",
        |p| p.greeting,
        &hub,
    )
    .await;
    hub.say(&sid, LINE).await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the answer",
        |p| !p.greeting,
        &hub,
    )
    .await;

    // The record, through the gateway.
    let record = hub
        .status_until(&sid, "the answer in the record", |s| {
            s["plays"].as_u64() >= Some(2)
        })
        .await;
    let messages = record["context"]["messages"].to_string();
    assert!(
        messages.contains(LINE) && messages.contains(ANSWER),
        "{record}"
    );

    // The NATS container dies mid-session: it comes back by itself and the
    // conversation goes on.
    let (pid, restarts) = container_pid(&hub, "nats");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    testkit::eventually(Duration::from_secs(60), "NATS restarted", async || {
        let (_, now) = container_pid(&hub, "nats");
        (now > restarts).then_some(())
    })
    .await;
    hub.ready(Duration::from_secs(120)).await;
    drop((plays, playback));
    let bus = hub.bus().await;
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;
    hub.say(&sid, "Is this seat taken?").await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the answer after NATS came back",
        |p| !p.greeting,
        &hub,
    )
    .await;

    // Reboot: down and up with the volumes kept. The earlier record is
    // still there and a new session works.
    let (code, _) = hub
        .post(&format!("/api/sessions/{sid}/end"), json!({}))
        .await;
    assert_eq!(code, 200);
    hub.compose(&["--profile", "demo-pi", "down", "-t", "10"]);
    hub.up();
    hub.ready(READY).await;
    let kept = hub
        .status_until(&sid, "the record after the reboot", |s| {
            s["plays"].as_u64() >= Some(3)
        })
        .await;
    assert!(
        kept["context"]["messages"].to_string().contains(ANSWER),
        "{kept}"
    );
    let bus = hub.bus().await;
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;
    let sid2 = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid2,
        "the greeting after the reboot",
        |p| p.greeting,
        &hub,
    )
    .await;

    // The same Pi host on Raspberry Pi OS bookworm (Debian 12, mpv 0.35),
    // with a visitor who speaks (a recording its microphone input hears
    // once, after the greeting): the greeting, the spoken line's answer and
    // a typed line's answer play there too.
    let wav_dir = tempfile::tempdir().unwrap();
    let wav = visitor_wav(wav_dir.path(), "Are you afraid of the dark?");
    hub.env
        .push(("CINEMA_DEMO_PI_VARIANT".into(), "-bookworm".into()));
    hub.env.push((
        "CINEMA_DEMO_PI_AUDIO_INPUT".into(),
        "wav:/tmp/visitor.wav".into(),
    ));
    hub.compose(&["--profile", "demo-pi", "up", "-d", "demo-pi"]);
    tests::hub::docker(&[
        "cp",
        &wav.display().to_string(),
        &format!("{}:/tmp/visitor.wav", hub.pi_container()),
    ]);
    assert_eq!(mpv_version(&hub), (0, 35));
    let (code, _) = hub
        .post(&format!("/api/sessions/{sid2}/end"), json!({}))
        .await;
    assert_eq!(code, 200);
    let sid3 = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid3,
        "the greeting on the bookworm Pi host",
        |p| p.greeting,
        &hub,
    )
    .await;
    let spoken = played(
        &mut plays,
        &mut playback,
        &sid3,
        "the answer to the spoken line on the bookworm Pi host",
        |p| !p.greeting,
        &hub,
    )
    .await;
    hub.say(&sid3, LINE).await;
    played(
        &mut plays,
        &mut playback,
        &sid3,
        "the answer to a typed line on the bookworm Pi host",
        |p| !p.greeting && p.command_id != spoken.command_id,
        &hub,
    )
    .await;
    let record = hub
        .status_until(&sid3, "the bookworm conversation in the record", |s| {
            s["context"]["messages"].to_string().contains(ANSWER)
        })
        .await;
    assert!(
        record["context"]["messages"]
            .to_string()
            .to_lowercase()
            .contains("afraid of the dark"),
        "{record}"
    );

    // Another Pi, numbered like a room ("101"), added without editing a
    // tracked file: its users generated with the `cinema` tool from the
    // image, its password in a file of the operator's, both named in the
    // environment compose reads; NATS restarted admits it.
    let own = tempfile::tempdir().unwrap();
    let accounts = hub.compose(&[
        "run",
        "--rm",
        "-T",
        "--no-deps",
        "cinema",
        "nats-accounts",
        "--pi",
        PI,
        "--pi",
        "101",
    ]);
    assert!(accounts.contains("pi-101"), "{accounts}");
    std::fs::write(own.path().join("accounts.conf"), &accounts).unwrap();
    std::fs::write(
        own.path().join("pis.env"),
        format!(
            "{}=room-101-Pa55\n",
            bus::permissions::password_env("pi-101")
        ),
    )
    .unwrap();
    hub.env.push((
        "CINEMA_NATS_ACCOUNTS".into(),
        own.path().join("accounts.conf").display().to_string(),
    ));
    hub.env.push((
        "CINEMA_NATS_ENV_FILE".into(),
        own.path().join("pis.env").display().to_string(),
    ));
    hub.compose(&["--profile", "demo-pi", "up", "-d", "nats"]);
    hub.ready(Duration::from_secs(120)).await;
    let url = |password: &str| format!("nats://pi-101:{password}@127.0.0.1:{}", hub.nats_port);
    let ok = bus::connect_options("room-101", &url("room-101-Pa55"))
        .await
        .unwrap()
        .connect(url("room-101-Pa55"))
        .await;
    assert!(ok.is_ok(), "pi-101 was refused: {:?}", ok.err());
    let wrong = bus::connect_options("room-101", &url("nope"))
        .await
        .unwrap()
        .connect(url("nope"))
        .await;
    assert!(wrong.is_err(), "a wrong password was admitted");
    // Down with the operator's files still there (compose reads them).
    drop(hub);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_with_tls_on_its_ports_by_setting_variables() {
    let mut hub = Hub::new();
    hub.tls();
    hub.up();
    // Every service reached NATS over TLS (they are all ready), the Pi host
    // too: its leaf link trusts the CA (install-pi --hub-ca).
    hub.ready(READY).await;
    let bus = hub.bus().await;
    assert!(
        bus.client().server_info().tls_required,
        "{:?}",
        bus.client().server_info()
    );
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;
    let sid = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the greeting over a TLS leaf link",
        |p| p.greeting,
        &hub,
    )
    .await;
    // A client that does not trust the CA is not let in.
    let url = format!("nats://services:svc-Pa55@127.0.0.1:{}", hub.nats_port);
    let plain = bus::connect_options("plain", &url)
        .await
        .unwrap()
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await;
    assert!(plain.is_err(), "a client without TLS was let in");
}

/// Waits until `/health` names `service` as the one not ready (503), every
/// other service of the hub answering.
async fn health_blames(hub: &Hub, service: &str) -> serde_json::Value {
    testkit::eventually(
        Duration::from_secs(180),
        &format!("/health naming {service} alone"),
        async || {
            let (code, h) = hub.get("/health").await;
            let missing: Vec<&str> = bus::names::service::HUB
                .into_iter()
                .filter(|s| h["services"][*s]["status"] != "ok")
                .collect();
            (code == 503 && missing == [service]).then_some(h)
        },
    )
    .await
}

/// The lines a compose service printed that contain `needle`.
fn said(hub: &Hub, service: &str, needle: &str) -> Vec<String> {
    let out = hub.run(&["logs", "--no-color", service]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_configuration_is_said_in_one_line_and_health_names_the_service() {
    let mut hub = Hub::new();

    // A missing password: compose refuses before anything starts, saying
    // what to set.
    let all = hub.env.clone();
    hub.env
        .retain(|(k, _)| k != "CINEMA_NATS_STATUS_STORE_PASSWORD");
    let out = hub.run(&["up", "-d"]);
    hub.env = all;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("CINEMA_NATS_STATUS_STORE_PASSWORD") && err.contains("set the NATS passwords"),
        "{err}"
    );
    assert!(
        hub.compose(&["ps", "-q"]).trim().is_empty(),
        "something started"
    );

    // A media URL Pis cannot use: clip-selector says so in one line and
    // /health names it; the rest of the hub runs.
    hub.env
        .push(("CINEMA_MEDIA_BASE_URL".into(), "hub.lan:8766".into()));
    hub.compose(&["up", "-d"]);
    let health = health_blames(&hub, "clip-selector").await;
    assert_eq!(health["nats"]["status"], "ok", "{health}");
    let lines = said(&hub, "clip-selector", "media_base_url must be an http");
    assert!(!lines.is_empty(), "{}", hub.logs());
    assert!(lines[0].contains("\"hub.lan:8766\""), "{lines:?}");

    // A library it may not read: the same.
    let films = tempfile::tempdir().unwrap();
    std::fs::create_dir(films.path().join("films")).unwrap();
    let locked = films.path().join("films");
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000)).unwrap();
    hub.env.pop();
    hub.env
        .push(("CINEMA_LIBRARY".into(), locked.display().to_string()));
    hub.compose(&["up", "-d", "clip-selector"]);
    health_blames(&hub, "clip-selector").await;
    testkit::eventually(
        Duration::from_secs(60),
        "clip-selector to say why",
        async || {
            let lines = said(&hub, "clip-selector", "ermission denied");
            lines.iter().any(|l| l.contains("/library")).then_some(())
        },
    )
    .await;

    // Put right, the hub is ready. Left at its default (localhost), the
    // media URL is a warning on the Pis page for the Pi host.
    std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    hub.env.push((
        "CINEMA_MEDIA_BASE_URL".into(),
        "http://localhost:8766".into(),
    ));
    hub.up();
    hub.ready(READY).await;
    let pi = testkit::eventually(
        Duration::from_secs(30),
        "the Pi on the Pis page",
        async || {
            let (_, body) = hub.get("/api/pis").await;
            body["pis"]
                .as_array()?
                .iter()
                .find(|p| p["pi_id"] == PI && p["status"] == "online")
                .cloned()
        },
    )
    .await;
    let warning = pi["media_warning"].as_str().unwrap_or_default();
    assert!(
        warning.contains("http://localhost:8766") && warning.contains("CINEMA_MEDIA_BASE_URL"),
        "{pi}"
    );
}

/// The JetStream cluster's view of `stream`: its leader and its peers
/// (name, current), asked of the node the test is connected to.
async fn stream_cluster(bus: &bus::Bus, stream: &str) -> (String, Vec<(String, bool)>) {
    let mut s = bus.jetstream().get_stream(stream).await.unwrap();
    let info = s.info().await.unwrap();
    let cluster = info
        .cluster
        .clone()
        .unwrap_or_else(|| panic!("{stream} is not clustered"));
    (
        cluster.leader.clone().unwrap_or_default(),
        cluster
            .replicas
            .iter()
            .map(|p| (p.name.clone(), p.current && !p.offline))
            .collect(),
    )
}

/// Three NATS nodes, the streams and buckets on all three: the node that
/// leads the events stream is killed mid-conversation and stays down for a
/// whole turn; nothing the visitor said, no record and no play is lost or
/// doubled; started again, it rejoins and catches up, and the conversation
/// goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_node_dies_in_the_cluster_and_nothing_is_lost() {
    use futures::StreamExt;
    use std::collections::{HashMap, HashSet};
    let mut hub = Hub::with_files(&["docker-compose.yml", "docker-compose.cluster.yml"]);
    hub.env
        .push(("CINEMA_NATS_CLUSTER_PASSWORD".into(), "route5Pa55".into()));
    hub.up();
    hub.ready(READY).await;
    let bus = hub.bus().await;
    // Replicated on three nodes, every one current.
    let events = bus::names::EVENTS_STREAM;
    let (_, peers) = testkit::eventually(
        Duration::from_secs(60),
        "the events stream on three current nodes",
        async || {
            let (leader, peers) = stream_cluster(&bus, events).await;
            // The leader is not among the replicas it lists.
            (peers.len() == 2 && peers.iter().all(|(_, ok)| *ok)).then_some((leader, peers))
        },
    )
    .await;
    assert_eq!(peers.len(), 2, "{peers:?}");
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;
    let (_, mut all_playback) = hub.watch_plays(&bus).await;
    let sid = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the greeting",
        |p| p.greeting,
        &hub,
    )
    .await;

    // The events stream's leader, moved off `nats` if it is there (that
    // node carries the Pi's leaf link and this test's connection, a
    // different failure): the node whose death costs the most.
    let node_service = |name: &str| match name {
        "cinema-hub" => "nats",
        "cinema-hub-2" => "nats-2",
        "cinema-hub-3" => "nats-3",
        other => panic!("unknown node {other}"),
    };
    let leader = testkit::eventually(
        Duration::from_secs(60),
        "the events stream led by nats-2 or nats-3",
        async || {
            let (leader, _) = stream_cluster(&bus, events).await;
            if leader == "cinema-hub" || leader.is_empty() {
                let _ = bus
                    .client()
                    .request(
                        format!("$JS.API.STREAM.LEADER.STEPDOWN.{events}"),
                        Default::default(),
                    )
                    .await;
                tokio::time::sleep(Duration::from_secs(1)).await;
                return None;
            }
            Some(leader)
        },
    )
    .await;
    let victim = node_service(&leader);
    eprintln!("cluster: killing {victim} ({leader}), the events stream's leader");
    hub.compose(&["kill", "-s", "SIGKILL", victim]);
    let killed = std::time::Instant::now();

    // A whole turn while it is down.
    hub.say(&sid, LINE).await;
    let answer = played(
        &mut plays,
        &mut playback,
        &sid,
        "the answer with a node down",
        |p| !p.greeting,
        &hub,
    )
    .await;
    eprintln!(
        "cluster: a line said as the leader died was answered and played {:.2} s later",
        killed.elapsed().as_secs_f64()
    );
    let (new_leader, _) = stream_cluster(&bus, events).await;
    assert_ne!(new_leader, leader);
    let record = hub
        .status_until(&sid, "the answer in the record", |s| {
            s["context"]["messages"].to_string().contains(ANSWER)
        })
        .await;
    assert!(
        record["context"]["messages"].to_string().contains(LINE),
        "{record}"
    );

    // Started again, the node rejoins and catches up.
    hub.compose(&["start", victim]);
    let restarted = std::time::Instant::now();
    testkit::eventually(
        Duration::from_secs(120),
        "the killed node current again",
        async || {
            let (_, peers) = stream_cluster(&bus, events).await;
            peers
                .iter()
                .any(|(name, ok)| *name == leader && *ok)
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "cluster: {victim} current again {:.2} s after it was started",
        restarted.elapsed().as_secs_f64()
    );
    hub.say(&sid, "Is this seat taken?").await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the answer after the node rejoined",
        |p| !p.greeting && p.command_id != answer.command_id,
        &hub,
    )
    .await;

    // Nothing lost or doubled: each line once in the record, each play
    // started once (counted up to the last play's end).
    let record = hub
        .status_until(&sid, "both answers in the record", |s| {
            s["plays"].as_u64() >= Some(3)
        })
        .await;
    let messages = record["context"]["messages"].to_string();
    assert_eq!(messages.matches(LINE).count(), 1, "{record}");
    assert_eq!(
        messages.matches("Is this seat taken?").count(),
        1,
        "{record}"
    );
    assert_eq!(messages.matches(ANSWER).count(), 1, "{record}");
    let mut started = HashMap::<String, Vec<i64>>::new();
    let mut finished = HashSet::new();
    while finished.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(30), all_playback.next())
            .await
            .unwrap()
            .unwrap();
        let e: PlaybackEvent = bus::decode_message(&m).unwrap();
        if e.session_id != sid {
            continue;
        }
        match e.state() {
            PlaybackState::Started => {
                let at = started.entry(e.command_id.clone()).or_default();
                if !at.contains(&e.at_ms) {
                    at.push(e.at_ms);
                }
            }
            PlaybackState::Finished => {
                finished.insert(e.command_id.clone());
            }
            _ => {}
        }
    }
    assert_eq!(started.len(), 3, "{started:?}");
    assert!(started.values().all(|at| at.len() == 1), "{started:?}");
}

/// The Pi host's network cut mid-session, for 5 s and for 60 s, then
/// restored: a line said during the short cut is answered on the Pi when
/// the link is back, once; one said during the long cut is reported expired
/// with its reason (the session ends when the Pi's presence lapses, with
/// the reason); the Pi is back in the conversation after; no transcript or
/// play is doubled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pi_cut_off_for_5_s_and_for_60_s_loses_and_doubles_nothing() {
    use futures::StreamExt;
    use std::time::Instant;
    use wire::v1::{Transcript, Utterance};
    // The visitor is a recording the Pi hears once after each greeting,
    // through its microphone input, as a person answering the TV would.
    let dir = tempfile::tempdir().unwrap();
    let wav = visitor_wav(dir.path(), "Do you like movies?");
    let mut hub = Hub::new();
    hub.env.push((
        "CINEMA_DEMO_PI_AUDIO_INPUT".into(),
        "wav:/tmp/visitor.wav".into(),
    ));
    hub.up();
    tests::hub::docker(&[
        "cp",
        &wav.display().to_string(),
        &format!("{}:/tmp/visitor.wav", hub.pi_container()),
    ]);
    hub.ready(READY).await;
    let bus = hub.bus().await;
    let (mut plays, mut playback) = hub.watch_plays(&bus).await;
    // Every playback event, to count them at the end.
    let (_, mut all_playback) = hub.watch_plays(&bus).await;
    let mut utterances = bus
        .client()
        .subscribe(bus::subjects::UTTERANCE_WILDCARD)
        .await
        .unwrap();
    let mut transcripts = bus
        .client()
        .subscribe(bus::subjects::SessionEvent::Transcript.wildcard())
        .await
        .unwrap();
    bus::round_trip(bus.client(), Duration::from_secs(10))
        .await
        .unwrap();
    let sid = hub.connect().await;
    played(
        &mut plays,
        &mut playback,
        &sid,
        "the greeting",
        |p| p.greeting,
        &hub,
    )
    .await;

    // The visitor answers the greeting as the link goes down for 5 s: what
    // they said reaches the hub when it is back, once, and is answered.
    hub.cut_pi();
    let cut = Instant::now();
    tokio::time::sleep(Duration::from_secs(5)).await;
    hub.restore_pi();
    let utterance: Utterance = tests::next_within(
        &mut utterances,
        "the utterance",
        Duration::from_secs(120),
        |u: &Utterance| u.session_id == sid,
    )
    .await;
    let arrived = Instant::now();
    // Spoken while the link was down (its speech ended before the cut
    // ended), it arrived after.
    eprintln!(
        "partition: the utterance arrived {:.2} s after the cut began ({:.2} s of audio)",
        arrived.duration_since(cut).as_secs_f64(),
        utterance.pcm.len() as f64 / 32_000.0
    );
    assert!(arrived.duration_since(cut) >= Duration::from_secs(5));
    let transcript: Transcript = tests::next_within(
        &mut transcripts,
        "the transcript",
        Duration::from_secs(120),
        |t: &Transcript| t.session_id == sid,
    )
    .await;
    assert_eq!(transcript.utterance_id, utterance.utterance_id);
    let spoken_answer = played(
        &mut plays,
        &mut playback,
        &sid,
        "the answer to the spoken line",
        |p| !p.greeting,
        &hub,
    )
    .await;
    eprintln!(
        "partition: the spoken line was answered with {:?} ({:?})",
        spoken_answer.clip_id, transcript.text
    );

    // 5 s: the answer waits for the link and plays once it is back.
    hub.cut_pi();
    let cut = Instant::now();
    hub.say(&sid, LINE).await;
    let answer = play_command(&mut plays, &sid, "the answer", |p| !p.greeting, &hub).await;
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(cut.elapsed())).await;
    hub.restore_pi();
    let restored = Instant::now();
    let started = playback_of(
        &mut playback,
        &answer.command_id,
        Duration::from_secs(60),
        &hub,
    )
    .await;
    assert_eq!(started.state(), PlaybackState::Started, "{started:?}");
    eprintln!(
        "partition: the answer started {:.2} s after a 5 s cut ended",
        restored.elapsed().as_secs_f64()
    );
    let finished = playback_of(
        &mut playback,
        &answer.command_id,
        Duration::from_secs(60),
        &hub,
    )
    .await;
    assert_eq!(finished.state(), PlaybackState::Finished, "{finished:?}");

    // 60 s: the answer expires with its reason, never played.
    hub.cut_pi();
    let cut = Instant::now();
    hub.say(&sid, "Is this seat taken?").await;
    let lost = play_command(&mut plays, &sid, "the lost answer", |p| !p.greeting, &hub).await;
    let expired = playback_of(
        &mut playback,
        &lost.command_id,
        Duration::from_secs(60),
        &hub,
    )
    .await;
    assert_eq!(expired.state(), PlaybackState::Expired, "{expired:?}");
    assert!(
        expired.error.contains("did not take it"),
        "{}",
        expired.error
    );
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(cut.elapsed())).await;
    // By now the Pi's presence lapsed (30 s): its session ended, saying why.
    let ended = hub
        .status_until(&sid, "the session to end", |s| s["status"] != "active")
        .await;
    assert!(
        ended["end_reason"]
            .as_str()
            .is_some_and(|r| r.contains("offline")),
        "{ended}"
    );
    hub.restore_pi();
    let restored = Instant::now();
    // Back in the conversation: a new session greets on the Pi.
    let sid2 = hub.connect().await;
    let connected = restored.elapsed();
    let greeting = play_command(
        &mut plays,
        &sid2,
        "the greeting after the cut",
        |p| p.greeting,
        &hub,
    )
    .await;
    let commanded = restored.elapsed();
    let started = playback_of(
        &mut playback,
        &greeting.command_id,
        Duration::from_secs(90),
        &hub,
    )
    .await;
    assert_eq!(started.state(), PlaybackState::Started, "{started:?}");
    let began = restored.elapsed();
    let finished = playback_of(
        &mut playback,
        &greeting.command_id,
        Duration::from_secs(90),
        &hub,
    )
    .await;
    assert_eq!(finished.state(), PlaybackState::Finished, "{finished:?}");
    eprintln!(
        "partition: after a 60 s cut ended: a session made {:.2} s, its greeting commanded {:.2} s, started {:.2} s, finished {:.2} s",
        connected.as_secs_f64(),
        commanded.as_secs_f64(),
        began.as_secs_f64(),
        restored.elapsed().as_secs_f64()
    );
    // What the hub's NATS and the Pi said of the link meanwhile.
    for service in ["nats", "demo-pi"] {
        let out = hub.run(&[
            "--profile",
            "demo-pi",
            "logs",
            "--no-color",
            "--timestamps",
            service,
        ]);
        let text = String::from_utf8_lossy(&out.stdout);
        for line in text
            .lines()
            .filter(|l| l.contains("eafnode") || l.contains("its limit") || l.contains("stopped"))
        {
            eprintln!(
                "partition log: {}",
                line.chars().take(240).collect::<String>()
            );
        }
    }

    // Nothing doubled: each command started at most once, and the expired
    // one never (counted up to the last greeting's end, a later event).
    // (A report sent again after a lost ack is the same report, seen twice
    // here; a second play would be another start, at another time.)
    let mut started = std::collections::HashMap::<String, std::collections::HashSet<i64>>::new();
    while let Some(m) = all_playback.next().await {
        let e: PlaybackEvent = bus::decode_message(&m).unwrap();
        if e.state() == PlaybackState::Started {
            started
                .entry(e.command_id.clone())
                .or_default()
                .insert(e.at_ms);
        }
        if e.session_id == sid2 && e.state() == PlaybackState::Finished {
            break;
        }
    }
    assert!(started.values().all(|s| s.len() == 1), "{started:?}");
    assert!(started.contains_key(&answer.command_id), "{started:?}");
    assert!(!started.contains_key(&lost.command_id), "{started:?}");
    // The record holds each line once.
    let record = hub
        .status_until(&sid, "the record", |s| s["status"] != "active")
        .await;
    let messages = record["context"]["messages"].to_string();
    assert_eq!(messages.matches(LINE).count(), 1, "{record}");
    assert_eq!(
        messages.matches(transcript.text.trim()).count(),
        1,
        "{record}"
    );
    assert_eq!(
        messages.matches("Is this seat taken?").count(),
        1,
        "{record}"
    );
}
