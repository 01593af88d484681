//! A hub under Docker Compose for the tests and the bench: the images
//! built with no registry (`scripts/images`), one compose project on free
//! ports with a demo Pi host, removed with its volumes when dropped.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use wire::v1::{PlayCommand, PlaybackEvent, PlaybackState};

pub const TOKEN: &str = "compose-test-token";
/// A line of the demo library, and the next line of its film, which
/// answers it.
pub const LINE: &str = "Where are you going?";
pub const ANSWER: &str = "I am going home, to the city by the river.";
pub const PI: &str = "local-pi";
/// The first start makes the demo library and ingests it.
pub const READY: Duration = Duration::from_secs(300);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// `scripts/images` once per test binary: the base images (cached in the
/// engine) and the project's images. Returns the base images' variables.
pub fn images() -> &'static Vec<(String, String)> {
    static IMAGES: OnceLock<Vec<(String, String)>> = OnceLock::new();
    IMAGES.get_or_init(|| {
        testkit::require("docker", "apt-get install docker.io (Docker Engine 20.10+)");
        let out = Command::new(root().join("scripts/images"))
            .current_dir(root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "scripts/images failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let out = Command::new(root().join("scripts/images"))
            .arg("--bases")
            .current_dir(root())
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// `docker compose` (v2) or `docker-compose` (1.29+), as scripts/compose
/// chooses.
pub fn compose_cmd() -> Vec<String> {
    let v2 = Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if v2 {
        vec!["docker".into(), "compose".into()]
    } else {
        let bin = testkit::require("docker-compose", "apt-get install docker-compose");
        vec![bin.display().to_string()]
    }
}

/// One compose project of the hub. One at a time in a test binary: each
/// is a dozen containers on a small machine.
pub struct Hub {
    pub project: String,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub nats_port: u16,
    /// The compose files, `-f` each.
    files: Vec<&'static str>,
    /// The CA of NATS's certificate when it runs TLS ([`Hub::tls`]).
    ca: Option<std::path::PathBuf>,
    _certs: Option<tempfile::TempDir>,
    http: reqwest::Client,
    _one: std::sync::MutexGuard<'static, ()>,
}

static ONE_HUB: std::sync::Mutex<()> = std::sync::Mutex::new(());
static HUBS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl Default for Hub {
    fn default() -> Hub {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub::with_files(&["docker-compose.yml"])
    }

    pub fn with_files(files: &[&'static str]) -> Hub {
        let one = ONE_HUB.lock().unwrap_or_else(|e| e.into_inner());
        let project = format!(
            "cinematest{}x{}",
            std::process::id(),
            HUBS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let port = testkit::free_port();
        let nats_port = testkit::free_port();
        let mut env: Vec<(String, String)> = images().clone();
        for (k, v) in [
            ("COMPOSE_PROJECT_NAME", project.clone()),
            ("CINEMA_NATS_SERVICES_PASSWORD", "svc-Pa55".into()),
            ("CINEMA_NATS_STATUS_STORE_PASSWORD", "status-Pa55".into()),
            ("CINEMA_NATS_GATEWAY_PASSWORD", "gw-Pa55".into()),
            ("CINEMA_NATS_PI_LOCAL_PI_PASSWORD", "pi-Pa55".into()),
            ("CINEMA_API_TOKEN", TOKEN.into()),
            ("PORT", port.to_string()),
            ("CINEMA_NATS_PORT", nats_port.to_string()),
            ("CINEMA_LEAF_PORT", testkit::free_port().to_string()),
            ("CINEMA_MEDIA_PORT", testkit::free_port().to_string()),
            ("CINEMA_LEAF_BIND", "127.0.0.1".into()),
            ("CINEMA_MEDIA_BIND", "127.0.0.1".into()),
            ("CINEMA_GATEWAY_BIND", "127.0.0.1".into()),
            // The Pi is on the `pis` network: the hub's media is there by
            // the service's name.
            ("CINEMA_MEDIA_BASE_URL", "http://clip-selector:8766".into()),
        ] {
            env.push((k.to_string(), v));
        }
        let hub = Hub {
            project,
            env,
            port,
            nats_port,
            files: files.to_vec(),
            ca: None,
            _certs: None,
            http: reqwest::Client::new(),
            _one: one,
        };
        hub.place_whisper_model();
        hub
    }

    /// TLS on the NATS ports, as an operator turns it on: a certificate
    /// folder and three variables, no file edited.
    pub fn tls(&mut self) {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _, _) = crate::certificates(dir.path());
        for (k, v) in [
            ("CINEMA_NATS_CONF", "hub-tls.conf".to_string()),
            ("CINEMA_NATS_TLS_DIR", dir.path().display().to_string()),
            ("CINEMA_NATS_CA", "/etc/cinema/tls/ca.pem".to_string()),
        ] {
            self.env.push((k.into(), v));
        }
        self.ca = Some(ca);
        self._certs = Some(dir);
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let cmd = compose_cmd();
        Command::new(&cmd[0])
            .args(&cmd[1..])
            .args(self.files.iter().flat_map(|f| ["-f", f]))
            .args(args)
            .current_dir(root())
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .output()
            .unwrap()
    }

    pub fn compose(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "compose {args:?} failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn logs(&self) -> String {
        let out = self.run(&["--profile", "demo-pi", "logs", "--no-color", "--tail", "40"]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The Whisper model of the tests, put into the `models` volume as an
    /// operator without internet would (README).
    pub fn place_whisper_model(&self) {
        let model = crate::whisper_model();
        let dir = model.parent().unwrap();
        let out = Command::new("docker")
            .args(["run", "--rm", "-v"])
            .arg(format!("{}_models:/var/lib/cinema/models", self.project))
            .arg("-v")
            .arg(format!("{}:/in:ro", dir.display()))
            .args([
                "cinema-chat:latest",
                "cp",
                "/in/ggml-tiny.en.bin",
                "/var/lib/cinema/models/ggml-tiny.en.bin",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "placing the model: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn up(&self) {
        self.compose(&["--profile", "demo-pi", "up", "-d"]);
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        match self
            .http
            .get(self.url(path))
            .bearer_auth(TOKEN)
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.json().await.unwrap_or(Value::Null)),
            Err(_) => (0, Value::Null),
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(self.url(path))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    /// Says `text` in session `sid`, as the dashboard does (202 expected).
    pub async fn say(&self, sid: &str, text: &str) {
        let (code, body) = self
            .post(&format!("/api/sessions/{sid}/say"), json!({ "text": text }))
            .await;
        assert_eq!(code, 202, "{body}");
    }

    /// Waits until `/health` is 200 and the Pi's spawner answers.
    pub async fn ready(&self, within: Duration) -> Value {
        let mut last = Value::Null;
        let ok = tokio::time::timeout(within, async {
            loop {
                let (code, h) = self.get("/health").await;
                if code == 200 && h["services"]["pi-spawner"]["status"] == "ok" {
                    return h;
                }
                last = h;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
        .await;
        ok.unwrap_or_else(|_| {
            panic!(
                "the hub was not ready within {within:?}: {last}\n{}",
                self.logs()
            )
        })
    }

    /// The bus as the services see it, through the published NATS port.
    /// Connected (a round trip done) before it returns.
    pub async fn bus(&self) -> bus::Bus {
        let url = format!("nats://services:svc-Pa55@127.0.0.1:{}", self.nats_port);
        let mut options = bus::connect_options("compose-test", &url).await.unwrap();
        if let Some(ca) = &self.ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        let bus = bus::Bus::new(options.connect(url).await.unwrap());
        bus::round_trip(bus.client(), Duration::from_secs(10))
            .await
            .unwrap();
        bus
    }

    /// Every play command and playback event, subscribed (the server has
    /// the subscriptions when this returns).
    pub async fn watch_plays(
        &self,
        bus: &bus::Bus,
    ) -> (bus::async_nats::Subscriber, bus::async_nats::Subscriber) {
        use bus::subjects::SessionEvent;
        let plays = bus
            .client()
            .subscribe(SessionEvent::Play.wildcard())
            .await
            .unwrap();
        let playback = bus
            .client()
            .subscribe(SessionEvent::Playback.wildcard())
            .await
            .unwrap();
        bus::round_trip(bus.client(), Duration::from_secs(10))
            .await
            .unwrap();
        (plays, playback)
    }

    /// Creates a session on the demo Pi (retrying while its presence is
    /// not yet known).
    pub async fn connect(&self) -> String {
        let mut last = Value::Null;
        let started = std::time::Instant::now();
        for _ in 0..60 {
            let (code, body) = self.post("/api/connect", json!({ "pi_id": PI })).await;
            if code == 200 {
                return body["identifier"].as_str().unwrap().to_string();
            }
            // Each new refusal once, with when it came (what a slow start
            // waited on).
            if body != last {
                eprintln!(
                    "connect: {code} {body} at {:.2} s",
                    started.elapsed().as_secs_f64()
                );
            }
            last = body;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("no session could be created: {last}\n{}", self.logs());
    }

    pub async fn status_until(
        &self,
        sid: &str,
        what: &str,
        keep: impl Fn(&Value) -> bool,
    ) -> Value {
        let mut last = Value::Null;
        for _ in 0..240 {
            let (code, s) = self.get(&format!("/conversation-status/{sid}")).await;
            if code == 200 && keep(&s) {
                return s;
            }
            last = s;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{what}: never seen in {last}\n{}", self.logs());
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let out = self.run(&[
            "--profile",
            "demo-pi",
            "down",
            "-v",
            "--remove-orphans",
            "-t",
            "5",
        ]);
        if !out.status.success() {
            eprintln!(
                "compose down of {} failed: {}",
                self.project,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The next play command of `sid` that `keep` accepts (within 90 s).
pub async fn play_command(
    plays: &mut bus::async_nats::Subscriber,
    sid: &str,
    what: &str,
    keep: impl Fn(&PlayCommand) -> bool,
    hub: &Hub,
) -> PlayCommand {
    let found = tokio::time::timeout(Duration::from_secs(90), async {
        while let Some(m) = plays.next().await {
            let p: PlayCommand = bus::decode_message(&m).unwrap();
            if p.session_id == sid && keep(&p) {
                return Some(p);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    found.unwrap_or_else(|| panic!("no play command for {what}\n{}", hub.logs()))
}

/// The next playback event of `command_id` (within `within`).
pub async fn playback_of(
    playback: &mut bus::async_nats::Subscriber,
    command_id: &str,
    within: Duration,
    hub: &Hub,
) -> PlaybackEvent {
    let found = tokio::time::timeout(within, async {
        while let Some(m) = playback.next().await {
            let e: PlaybackEvent = bus::decode_message(&m).unwrap();
            if e.command_id == command_id {
                return Some(e);
            }
        }
        None
    })
    .await
    .ok()
    .flatten();
    found.unwrap_or_else(|| panic!("no playback of {command_id}\n{}", hub.logs()))
}

/// Waits for a play command of `sid` that `keep` accepts, then for the
/// Pi's report that it finished playing.
pub async fn played(
    plays: &mut bus::async_nats::Subscriber,
    playback: &mut bus::async_nats::Subscriber,
    sid: &str,
    what: &str,
    keep: impl Fn(&PlayCommand) -> bool,
    hub: &Hub,
) -> PlayCommand {
    let play = play_command(plays, sid, what, keep, hub).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let e = playback_of(playback, &play.command_id, left, hub).await;
        match e.state() {
            PlaybackState::Finished => return play,
            PlaybackState::Started => {}
            other => panic!(
                "{what} did not play on the Pi: {other:?}: {}\n{}",
                e.error,
                hub.logs()
            ),
        }
    }
}

impl Hub {
    /// The demo Pi host's container.
    pub fn pi_container(&self) -> String {
        self.compose(&["--profile", "demo-pi", "ps", "-q", "demo-pi"])
            .trim()
            .to_string()
    }

    /// Cuts the Pi host off the network it reaches the hub by (as a
    /// pulled cable or a dead Wi-Fi would); its own processes run on.
    pub fn cut_pi(&self) {
        docker(&[
            "network",
            "disconnect",
            &format!("{}_pis", self.project),
            &self.pi_container(),
        ]);
    }

    /// Puts the Pi host back on its network.
    pub fn restore_pi(&self) {
        docker(&[
            "network",
            "connect",
            &format!("{}_pis", self.project),
            &self.pi_container(),
        ]);
    }
}

/// Runs `docker ARGS`, which must succeed.
pub fn docker(args: &[&str]) -> String {
    let out = Command::new("docker").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "docker {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The host's pid of a compose service's main process.
pub fn container_pid(hub: &Hub, service: &str) -> (i32, u64) {
    let id = hub.compose(&["ps", "-q", service]).trim().to_string();
    let out = Command::new("docker")
        .args(["inspect", "-f", "{{.State.Pid}} {{.RestartCount}}", &id])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let mut parts = text.split_whitespace();
    let pid = parts.next().unwrap().parse().unwrap();
    let restarts = parts.next().unwrap().parse().unwrap();
    (pid, restarts)
}
