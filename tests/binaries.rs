//! Every binary has `--help`, `--version`, and exits 64 with one line on bad configuration.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use bus::names::service::{ALL, PI_CLIENT};

/// Every service binary, and the per-session pi-client.
fn binaries() -> impl Iterator<Item = &'static str> {
    ALL.into_iter().chain([PI_CLIENT])
}

#[test]
fn help_version_and_bad_configuration() {
    for name in binaries().chain(["cinema"]) {
        let bin = testkit::bin(name);
        let help = Command::new(&bin).arg("--help").output().unwrap();
        assert!(help.status.success(), "{name} --help");
        assert!(
            String::from_utf8_lossy(&help.stdout).contains("Usage"),
            "{name} --help"
        );
        let version = Command::new(&bin).arg("--version").output().unwrap();
        assert!(
            String::from_utf8_lossy(&version.stdout).contains(env!("CARGO_PKG_VERSION")),
            "{name} --version"
        );
    }
    for name in binaries() {
        let out = Command::new(testkit::bin(name))
            .args(["--set", "nats_url=[1,2]"])
            .env("CINEMA_SESSION_ID", "s1")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(64),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{name}: one line, got {stderr}"
        );
        assert!(
            stderr.starts_with(&format!("{name}: bad configuration:")),
            "{stderr}"
        );
    }
    // Specific checks name the setting.
    let out = Command::new(testkit::bin("pi-client"))
        .env_remove("CINEMA_SESSION_ID")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_SESSION_ID"));
    let out = Command::new(testkit::bin("pi-client"))
        .env("CINEMA_SESSION_ID", "s1")
        .env("CINEMA_PI_AUDIO_INPUT", "telepathy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CINEMA_PI_AUDIO_INPUT"));
    let out = Command::new(testkit::bin("llm"))
        .env("CINEMA_DIRECTOR", "telepathy")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("director"));
    let out = Command::new(testkit::bin("dashboard-gateway"))
        .env("PORT", "http")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// `cinema tap` prints one session's traffic, decoded, as JSON lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cinema_tap_prints_a_sessions_traffic_as_json() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let nats = testkit::NatsServer::start();
    let bus = nats.bus("test").await;
    let mut tap = Command::new(testkit::bin("cinema"))
        .args(["tap", "--session", "s1", "--count", "2"])
        .env("NATS_URL", nats.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says when it is subscribed.
    let mut err = BufReader::new(tap.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("watching cinema.>"), "{line}");
    for sid in ["s2", "s1"] {
        let t = wire::v1::Transcript {
            session_id: sid.into(),
            text: format!("hello from {sid}"),
            is_final: true,
            ..Default::default()
        };
        bus.publish(
            bus::subjects::session(sid, bus::subjects::SessionEvent::Transcript),
            &t,
        )
        .await
        .unwrap();
    }
    bus.client()
        .publish("cinema.pi.p1.session.s1.play", "not protobuf".into())
        .await
        .unwrap();
    bus.client().flush().await.unwrap();
    let pid = tap.id() as i32;
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(30),
        tokio::task::spawn_blocking(move || tap.wait_with_output().unwrap()),
    )
    .await
    .unwrap_or_else(|_| {
        tests::kill9(pid);
        panic!("cinema tap did not print the two messages within 30 s")
    })
    .unwrap();
    assert!(out.status.success());
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0]["subject"], "cinema.session.s1.transcript");
    assert_eq!(lines[0]["type"], "cinema.v1.Transcript");
    assert_eq!(lines[0]["message"]["text"], "hello from s1");
    assert_eq!(lines[1]["subject"], "cinema.pi.p1.session.s1.play");
    assert_eq!(lines[1]["message"], "not protobuf");
}
