//! Shared set-up of the end-to-end tests: a private NATS server, a synthetic
//! film library and the whole stack of real service binaries.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use cinema::up::{Stack, StackOptions};
use testkit::NatsServer;

pub mod hub;
pub mod webdriver;

pub const FILM: (&str, &[&str]) = (
    "station-story",
    &[
        "Hello there, traveller!",
        "Good morning. Can you help me?",
        "Where is the station?",
        "The station is down the road, past the bakery.",
        "Thank you very much.",
    ],
);

/// The id of the simulated Pi that [`World`] starts.
pub const SIM_PI: &str = "test-pi";

pub struct World {
    pub nats: NatsServer,
    pub stack: Option<Stack>,
    pub http: reqwest::Client,
    pub base: String,
    pub bus: bus::Bus,
    _library: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl World {
    /// Starts NATS, makes the library, starts every service and waits until
    /// `/health` says every service answers.
    pub async fn start() -> World {
        World::start_with(&[]).await
    }

    /// Like [`World::start`], with extra environment for every service.
    pub async fn start_with(extra_env: &[(&str, &str)]) -> World {
        let nats = NatsServer::start();
        let url = nats.url();
        World::start_on(nats, &url, extra_env, HashMap::new()).await
    }

    /// Like [`World::start_with`], on a given server, the test's own bus
    /// connecting through `test_url`, with extra environment per service
    /// (by name: each its own NATS user, say; `pi-spawner`'s goes to its
    /// clients too).
    pub async fn start_on(
        nats: NatsServer,
        test_url: &str,
        extra_env: &[(&str, &str)],
        service_env: HashMap<String, HashMap<String, String>>,
    ) -> World {
        testkit::require("mpv", "apt-get install mpv");
        let library = testkit::film_library(&[FILM]);
        let data = tempfile::tempdir().unwrap();
        let port = testkit::free_port();
        let mut env = HashMap::from([
            (
                "WHISPER_MODEL".to_string(),
                whisper_model().display().to_string(),
            ),
            ("CINEMA_PI_CLIENT_VO".to_string(), "null".to_string()),
            ("CINEMA_PI_CLIENT_AO".to_string(), "null".to_string()),
            (
                "RUST_LOG".to_string(),
                "info,async_nats=warn,tantivy=warn,whisper_rs=warn".to_string(),
            ),
        ]);
        env.extend(
            extra_env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let stack = Stack::start(
            StackOptions {
                bin_dir: testkit::bin_dir().to_path_buf(),
                data_dir: data.path().to_path_buf(),
                nats_url: Some(nats.url()),
                nats_port: 0,
                library: library.path().to_path_buf(),
                port,
                media_port: 0,
                pi_id: SIM_PI.into(),
                env,
                service_env,
            },
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
        let bus = nats.bus_at(test_url, "test").await;
        let world = World {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            stack: Some(stack),
            bus,
            nats,
            _library: library,
            _data: data,
        };
        let health = world.clone_http();
        let base = world.base.clone();
        testkit::eventually(
            Duration::from_secs(30),
            "every service healthy and the simulated Pi's spawner up",
            async || {
                let r = health.get(format!("{base}/health")).send().await.ok()?;
                if !r.status().is_success() {
                    return None;
                }
                let h: serde_json::Value = r.json().await.ok()?;
                (h["services"]["pi-spawner"]["status"] == "ok").then_some(())
            },
        )
        .await;
        world
    }

    fn clone_http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Sends a request to the gateway: its status and JSON body (`null` when
    /// the body is not JSON).
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let r = req.send().await.unwrap();
        let code = r.status().as_u16();
        (code, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(
        &self,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let mut req = self.http.post(self.url(path));
        if let Some(b) = body {
            req = req.json(&b);
        }
        self.send(req).await
    }

    pub async fn post_raw(&self, path: &str, body: &str) -> (u16, serde_json::Value) {
        let req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body.to_string());
        self.send(req).await
    }

    pub async fn delete(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.http.delete(self.url(path))).await
    }

    pub async fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.send(self.http.get(self.url(path))).await
    }

    /// Creates a session, retrying while the Pi's presence is not yet known.
    pub async fn connect(&self) -> serde_json::Value {
        testkit::eventually(
            Duration::from_secs(20),
            "a session to be created",
            async || {
                let (code, body) = self.post("/api/connect", None).await;
                (code == 200).then_some(body)
            },
        )
        .await
    }

    /// Subscribes to one event of every session.
    pub async fn subscribe(
        &self,
        event: bus::subjects::SessionEvent,
    ) -> bus::async_nats::Subscriber {
        let sub = self.bus.client().subscribe(event.wildcard()).await.unwrap();
        // Nothing published from now on is missed.
        bus::round_trip(self.bus.client(), Duration::from_secs(10))
            .await
            .unwrap();
        sub
    }

    pub fn stack(&self) -> &Stack {
        self.stack.as_ref().unwrap()
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self._data.path()
    }

    /// Polls `/conversation-status/{sid}` until `keep` accepts it.
    pub async fn status_until(
        &self,
        sid: &str,
        what: &str,
        keep: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        testkit::eventually(Duration::from_secs(30), what, async || {
            let (code, s) = self.get(&format!("/conversation-status/{sid}")).await;
            (code == 200 && keep(&s)).then_some(s)
        })
        .await
    }

    /// Every message of `subject` kept in the events stream, decoded.
    pub async fn recorded<M: wire::Message + wire::Name + Default>(
        &self,
        subject: String,
    ) -> Vec<M> {
        recorded(&self.bus, subject).await
    }

    pub async fn stop(mut self) {
        if let Some(s) = self.stack.take() {
            s.stop().await;
        }
    }
}

/// Every message of `subject` kept in the events stream, decoded.
pub async fn recorded<M: wire::Message + wire::Name + Default>(
    bus: &bus::Bus,
    subject: String,
) -> Vec<M> {
    use futures::StreamExt;
    let stream = bus
        .jetstream()
        .get_stream(bus::names::EVENTS_STREAM)
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(bus::async_nats::jetstream::consumer::pull::Config {
            filter_subject: subject,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut batch = consumer
        .fetch()
        .max_messages(1000)
        .expires(Duration::from_millis(500))
        .messages()
        .await
        .unwrap();
    while let Some(Ok(m)) = batch.next().await {
        if let Ok(v) = bus::decode_message::<M>(&m) {
            out.push(v);
        }
    }
    out
}

/// Waits for the next message on `sub` that decodes as `M` and passes `keep`.
pub async fn next<M: wire::Message + wire::Name + Default>(
    sub: &mut bus::async_nats::Subscriber,
    what: &str,
    keep: impl Fn(&M) -> bool,
) -> M {
    next_within(sub, what, Duration::from_secs(30), keep).await
}

/// [`next`] with its own patience (slow work on a loaded 2-core machine).
pub async fn next_within<M: wire::Message + wire::Name + Default>(
    sub: &mut bus::async_nats::Subscriber,
    what: &str,
    within: Duration,
    keep: impl Fn(&M) -> bool,
) -> M {
    use futures::StreamExt;
    tokio::time::timeout(within, async {
        loop {
            let msg = sub.next().await.expect("subscription open");
            if let Ok(m) = bus::decode_message::<M>(&msg)
                && keep(&m)
            {
                return m;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// A variable of a running process's environment.
pub fn process_env(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_string))
}

/// Sends SIGKILL to one process.
pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Prints one benchmark line: count, p50/p95/p99 and max of `samples` (ms).
pub fn report(name: &str, mut samples: Vec<f64>) {
    samples.sort_by(f64::total_cmp);
    println!(
        "{name:<40} n={:<5} p50={:>7.2} ms  p95={:>7.2} ms  p99={:>7.2} ms  max={:>7.2} ms",
        samples.len(),
        percentile(&samples, 50.0),
        percentile(&samples, 95.0),
        percentile(&samples, 99.0),
        samples.last().copied().unwrap_or(f64::NAN)
    );
}

/// The `p`th percentile of sorted samples (nearest rank).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((p / 100.0) * (sorted.len().saturating_sub(1)) as f64).round() as usize;
    sorted.get(i).copied().unwrap_or(f64::NAN)
}

/// Resident memory of a process, in KiB (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// A second film, so a session can go on for a dozen turns without repeats.
pub const FILM_TWO: (&str, &[&str]) = (
    "rainy-evening",
    &[
        "Is anybody home?",
        "Come in, come in, you are soaking wet.",
        "It has rained all day.",
        "Sit by the fire and tell me everything.",
        "I lost my way in the forest.",
        "Nobody finds this house by chance.",
        "Do you have anything to eat?",
        "There is soup, and bread, and a little cheese.",
        "You are very kind.",
        "Kindness costs nothing on a night like this.",
    ],
);

/// Service processes of a test, killed when it drops.
pub struct Processes(Vec<std::process::Child>);

impl Drop for Processes {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Processes {
    pub fn pids(&self) -> Vec<u32> {
        self.0.iter().map(std::process::Child::id).collect()
    }
}

/// The director's world without a Pi: NATS, a real clip-selector over a
/// synthetic library, and `replicas` llm processes with `env`. Events are
/// published on the bus as room-manager and stt would.
pub struct DirectorRig {
    pub bus: bus::Bus,
    pub processes: Processes,
    pub nats: NatsServer,
    _library: tempfile::TempDir,
}

impl DirectorRig {
    pub async fn start(env: &[(&str, &str)], replicas: usize) -> DirectorRig {
        let nats = NatsServer::start();
        let library = testkit::film_library(&[FILM, FILM_TWO]);
        let bus = nats.bus("test").await;
        let spawn = |name: &str, extra: &[(&str, &str)]| {
            std::process::Command::new(testkit::bin(name))
                .env("NATS_URL", nats.url())
                .env("CINEMA_LIBRARY", library.path())
                .env("CINEMA_CLIP_SELECTOR_MEDIA_ADDR", "127.0.0.1:0")
                .env("RUST_LOG", "warn")
                .envs(extra.iter().copied())
                .spawn()
                .unwrap()
        };
        let mut children = vec![spawn("clip-selector", &[])];
        for _ in 0..replicas {
            children.push(spawn("llm", env));
        }
        let processes = Processes(children);
        testkit::eventually(
            Duration::from_secs(60),
            "clip-selector and every llm replica to answer",
            async || {
                let up = bus::service::ping_all(bus.client(), Duration::from_millis(300))
                    .await
                    .ok()?;
                let llms = up
                    .iter()
                    .filter(|i| i.name == bus::names::service::LLM)
                    .count();
                // clip-selector answers during its first ingest: ready once
                // its library is loaded.
                let films: wire::v1::FilmList = bus
                    .request(
                        bus::subjects::clips::FILMS.into(),
                        &wire::v1::ListFilmsRequest {},
                    )
                    .await
                    .ok()?;
                (!films.loading && llms == replicas).then_some(())
            },
        )
        .await;
        DirectorRig {
            bus,
            processes,
            nats,
            _library: library,
        }
    }

    /// The Pi of `sid` joined (as room-manager announces it).
    pub async fn join(&self, sid: &str) {
        let joined = wire::v1::ClientJoined {
            session_id: sid.into(),
            ..Default::default()
        };
        self.bus
            .publish_durable(
                bus::subjects::pi_session("test-pi", sid, bus::subjects::SessionEvent::Joined),
                &joined,
                &format!("joined-{sid}"),
            )
            .await
            .unwrap();
    }

    /// The visitor said `text` (a final transcript, as stt publishes it).
    pub async fn say(&self, sid: &str, utterance: &str, text: &str) {
        let t = wire::v1::Transcript {
            session_id: sid.into(),
            utterance_id: utterance.into(),
            text: text.into(),
            is_final: true,
            source: wire::v1::TranscriptSource::Typed as i32,
            at_ms: wire::now_ms(),
            ..Default::default()
        };
        self.bus
            .publish_durable(
                bus::subjects::session(sid, bus::subjects::SessionEvent::Transcript),
                &t,
                &format!("t-{sid}-{utterance}"),
            )
            .await
            .unwrap();
    }

    /// The session is over (as room-manager announces it).
    pub async fn end(&self, sid: &str) {
        let ended = wire::v1::SessionEnded {
            session_id: sid.into(),
            ..Default::default()
        };
        self.bus
            .publish_durable(
                bus::subjects::session(sid, bus::subjects::SessionEvent::Ended),
                &ended,
                &format!("ended-{sid}"),
            )
            .await
            .unwrap();
    }

    pub async fn subscribe(
        &self,
        sid: &str,
        event: bus::subjects::SessionEvent,
    ) -> bus::async_nats::Subscriber {
        self.bus
            .client()
            .subscribe(bus::subjects::session(sid, event))
            .await
            .unwrap()
    }
}

/// The Whisper model of the tests and benches: `../shared/models/ggml-tiny.en.bin`
/// beside the workspace, or the copy `scripts/setup` put in the models folder
/// (`WHISPER_MODELS_DIR`, for a clone that is not beside `shared/`). Panics
/// with a hint when there is none.
pub fn whisper_model() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let models_dir = std::env::var_os("WHISPER_MODELS_DIR")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".local/share/cinema-chat/models"))
        });
    let candidates: Vec<std::path::PathBuf> = [Some(root.join("../shared/models")), models_dir]
        .into_iter()
        .flatten()
        .map(|d| d.join("ggml-tiny.en.bin"))
        .collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "the Whisper test model is missing (looked at {candidates:?}): run `source scripts/setup` \
                 beside ../shared/models, or download ggml-tiny.en.bin from \
                 https://huggingface.co/ggerganov/whisper.cpp/resolve/main/ggml-tiny.en.bin into one of them"
            )
        })
}

/// `text` spoken by espeak-ng at 16 kHz, with 0.3 s of silence before it
/// (tiny.en misreads speech that starts at sample 0) and 0.2 s after.
pub fn speech(text: &str) -> Vec<i16> {
    testkit::require("espeak-ng", "apt-get install espeak-ng");
    testkit::require("ffmpeg", "apt-get install ffmpeg");
    let mut pcm = vec![0i16; 4_800];
    pcm.extend(synth::speech_pcm16k(text).unwrap());
    pcm.extend(std::iter::repeat_n(0, 3_200));
    pcm
}

/// An utterance of 16 kHz samples, as the Pi sends it.
pub fn utterance(sid: &str, utterance_id: &str, pcm: &[i16]) -> wire::v1::Utterance {
    let now = wire::now_ms();
    wire::v1::Utterance {
        session_id: sid.into(),
        utterance_id: utterance_id.into(),
        sample_rate: 16_000,
        pcm: pcm.iter().flat_map(|s| s.to_le_bytes()).collect(),
        speech_start_ms: now - (pcm.len() as i64 * 1000 / 16_000),
        speech_end_ms: now,
        device: "test".into(),
    }
}

/// Puts an utterance on the work queue, as pi-client does.
pub async fn send_utterance(bus: &bus::Bus, u: &wire::v1::Utterance) {
    bus.publish_durable(
        bus::subjects::utterance("test-pi", &u.session_id),
        u,
        &format!("utterance-{}", u.utterance_id),
    )
    .await
    .unwrap();
}

/// A bench setting from the environment (`CINEMA_BENCH_…`), or `default`
/// when unset or unreadable.
pub fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Word error rate of `hypothesis` against `reference`: word-level edit
/// distance over the reference's length, both lowercased, punctuation dropped.
pub fn word_error_rate(reference: &str, hypothesis: &str) -> f64 {
    fn words(s: &str) -> Vec<String> {
        s.to_lowercase()
            .split_whitespace()
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric() || *c == '\'')
                    .collect::<String>()
            })
            .filter(|w| !w.is_empty())
            .collect()
    }
    let (r, h) = (words(reference), words(hypothesis));
    if r.is_empty() {
        return if h.is_empty() { 0.0 } else { 1.0 };
    }
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for (i, rw) in r.iter().enumerate() {
        let mut cur = vec![i + 1; h.len() + 1];
        for (j, hw) in h.iter().enumerate() {
            let sub = prev[j] + usize::from(rw != hw);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len() as f64
}

/// An stt process on the test model; its stderr (JSON log lines) goes to a
/// file the test can read. Killed on drop.
pub struct Stt {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
}

impl Stt {
    /// Starts stt against `nats_url` with a short ack wait (3 s), one worker,
    /// and `env` on top.
    pub fn spawn(nats_url: &str, env: &[(&str, &str)]) -> Stt {
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = std::process::Command::new(testkit::bin("stt"))
            .env("NATS_URL", nats_url)
            .env("WHISPER_MODEL", whisper_model())
            .env("CINEMA_STT_ACK_WAIT_S", "3")
            .env("RUST_LOG", "info,async_nats=warn,whisper_rs=warn")
            .envs(env.iter().copied())
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Stt { child, log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Everything it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        kill9(self.pid());
        let _ = self.child.wait();
    }
}

impl Drop for Stt {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `n` stt instances answer on the services API (each registers
/// once its model is loaded and its consumer exists).
pub async fn stt_ready(bus: &bus::Bus, n: usize) {
    testkit::eventually(Duration::from_secs(120), "stt to be ready", async || {
        let up = bus::service::ping_all(bus.client(), Duration::from_millis(300))
            .await
            .ok()?;
        let stt = up
            .iter()
            .filter(|i| i.name == bus::names::service::STT)
            .count();
        (stt == n).then_some(())
    })
    .await;
}

/// A CA and a server certificate for 127.0.0.1 signed by it (openssl).
pub fn certificates(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    testkit::require("openssl", "apt-get install openssl");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "2",
        "-subj",
        "/CN=cinema test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:nats\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[cfg(test)]
mod wer_tests {
    use super::word_error_rate;

    #[test]
    fn word_error_rates() {
        assert_eq!(
            word_error_rate("Where is the station?", "where is the station"),
            0.0
        );
        assert_eq!(word_error_rate("a b c d", "a x c d"), 0.25);
        assert_eq!(word_error_rate("a b c d", "a c d"), 0.25);
        assert_eq!(word_error_rate("a b", "a b c d"), 1.0);
        assert_eq!(word_error_rate("", ""), 0.0);
        assert_eq!(word_error_rate("hi", ""), 1.0);
    }
}
