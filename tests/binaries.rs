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

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        // `pid (comm) state ppid …`: the fields after the last `)`.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

/// Whether process `pid` still runs (a zombie has finished).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.trim_start().chars().next())
        })
        .is_some_and(|state| state != 'Z')
}

/// Polls `f` every 50 ms until it gives a value; panics after `limit`.
fn wait_for<T>(limit: std::time::Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(started.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `cinema up` killed with SIGKILL, or by a closed terminal's SIGHUP, takes
/// its nats-server and every service with it.
#[test]
fn cinema_up_leaves_nothing_behind_however_it_dies() {
    testkit::require("setpriv", "apt-get install util-linux");
    for signal in [
        nix::sys::signal::Signal::SIGKILL,
        nix::sys::signal::Signal::SIGHUP,
    ] {
        let data = tempfile::tempdir().unwrap();
        let library = testkit::film_library(&[tests::FILM]);
        let port = testkit::free_port();
        // SIGHUP as a terminal delivers it: whatever this test inherited
        // (`nohup` ignores it, and an ignored signal stays ignored across
        // exec), cinema gets the default action.
        let mut up = Command::new("env")
            .arg("--default-signal=HUP")
            .arg(testkit::bin("cinema"))
            .arg("up")
            .args(["--port", &port.to_string()])
            .args(["--nats-port", &testkit::free_port().to_string()])
            .args(["--media-port", &testkit::free_port().to_string()])
            .arg("--data-dir")
            .arg(data.path())
            .arg("--library")
            .arg(library.path())
            .env("WHISPER_MODEL", tests::whisper_model())
            .env("CINEMA_PI_CLIENT_VO", "null")
            .env("CINEMA_PI_CLIENT_AO", "null")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = up.id();
        // nats-server and the seven services.
        let children = wait_for(
            std::time::Duration::from_secs(60),
            "cinema up to start everything",
            || {
                let c = children_of(pid);
                (c.len() == 8).then_some(c)
            },
        );
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal).unwrap();
        wait_for(
            std::time::Duration::from_secs(30),
            &format!("cinema up to die of {signal}"),
            || up.try_wait().unwrap(),
        );
        wait_for(
            std::time::Duration::from_secs(30),
            &format!("every child of cinema up to end after {signal}"),
            || children.iter().all(|c| !running(*c)).then_some(()),
        );
    }
}

/// Every service exits on SIGTERM within its grace (docker gives 10 s)
/// even when its NATS server is gone and nothing it sends can arrive.
#[test]
fn every_service_exits_promptly_on_sigterm_when_nats_is_gone() {
    let library = testkit::film_library(&[tests::FILM]);
    let data = tempfile::tempdir().unwrap();
    let mut nats = testkit::NatsServer::start();
    let services: Vec<(&str, std::process::Child)> = ALL
        .into_iter()
        .map(|name| {
            let child = Command::new(testkit::bin(name))
                .env("NATS_URL", nats.url())
                .env("CINEMA_LIBRARY", library.path())
                .env("CINEMA_CLIP_SELECTOR_MEDIA_ADDR", "127.0.0.1:0")
                .env("PORT", testkit::free_port().to_string())
                .env("WHISPER_MODEL", tests::whisper_model())
                .env("CINEMA_PI_ID", "stop-pi")
                .env("CINEMA_PI_SPAWNER_CLIENT_BIN", testkit::bin("pi-client"))
                .env("CINEMA_PI_SPAWNER_STATE_DIR", data.path())
                .env("RUST_LOG", "warn")
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap();
            (name, child)
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let bus = nats.bus("stop-test").await;
        testkit::eventually(
            std::time::Duration::from_secs(120),
            "every service to register",
            async || {
                let up =
                    bus::service::ping_all(bus.client(), std::time::Duration::from_millis(300))
                        .await
                        .ok()?;
                ALL.iter()
                    .all(|name| up.iter().any(|i| i.name == *name))
                    .then_some(())
            },
        )
        .await;
    });
    nats.stop();
    let mut slow = Vec::new();
    for (name, mut child) in services {
        let started = std::time::Instant::now();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let exited = wait_for(
            std::time::Duration::from_secs(20),
            "the service to exit",
            || child.try_wait().unwrap().map(|_| started.elapsed()),
        );
        println!(
            "{name}: exited {:.2} s after SIGTERM with NATS gone",
            exited.as_secs_f64()
        );
        if exited > plumbing::STOP_GRACE + std::time::Duration::from_secs(2) {
            slow.push(format!("{name}: {exited:?}"));
        }
    }
    assert!(slow.is_empty(), "past the stop grace: {slow:?}");
}
