//! The whole stack of real service binaries on a private NATS server
//! over a synthetic film library ([`World`]), and the Pi it simulates.

use crate::{recorded, whisper_model};
use std::collections::HashMap;
use std::time::Duration;

use cinema::up::{Stack, StackOptions};
use testkit::NatsServer;

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
    /// The services as processes (`cinema up`'s supervisor)…
    pub stack: Option<Stack>,
    /// …or in this process ([`World::start_in_process`]).
    pub services: Option<plumbing::in_process::InProcess>,
    pub http: reqwest::Client,
    pub base: String,
    pub bus: bus::Bus,
    /// The gateway's `CINEMA_API_TOKEN`, sent with every request when set.
    pub token: Option<String>,
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
            services: None,
            bus,
            token: extra_env
                .iter()
                .find(|(k, _)| *k == "CINEMA_API_TOKEN")
                .map(|(_, v)| v.to_string()),
            nats,
            _library: library,
            _data: data,
        };
        world.ready().await;
        world
    }

    /// Like [`World::start`], with every service in this process (their
    /// `run` futures, each on its own NATS connection, as
    /// `plumbing::main` runs them) and the simulated Pi's clients as
    /// processes: for tests of behaviour, not of processes (no kills, no
    /// signals).
    pub async fn start_in_process() -> World {
        testkit::require("mpv", "apt-get install mpv");
        let nats = NatsServer::start();
        let library = testkit::film_library(&[FILM]);
        let data = tempfile::tempdir().unwrap();
        let port = testkit::free_port();
        let vars: Vec<(String, String)> = [
            ("NATS_URL", nats.url()),
            ("CINEMA_LIBRARY", library.path().display().to_string()),
            ("PORT", port.to_string()),
            ("CINEMA_PI_ID", SIM_PI.to_string()),
            ("CINEMA_CLIP_SELECTOR_MEDIA_ADDR", "127.0.0.1:0".to_string()),
            (
                "CINEMA_PI_SPAWNER_CLIENT_BIN",
                testkit::bin("pi-client").display().to_string(),
            ),
            (
                "CINEMA_PI_SPAWNER_STATE_DIR",
                data.path().join("state").display().to_string(),
            ),
            ("WHISPER_MODEL", whisper_model().display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        // The clients are processes: headless mpv for them.
        let spawner_toml = data.path().join("pi-spawner.toml");
        std::fs::write(
            &spawner_toml,
            "[client_env]\nCINEMA_PI_CLIENT_VO = \"null\"\nCINEMA_PI_CLIENT_AO = \"null\"\n",
        )
        .unwrap();
        let spawner_args = plumbing::CommonArgs {
            config: Some(spawner_toml),
            ..Default::default()
        };
        let services = plumbing::in_process::InProcess::new(2).unwrap();
        services
            .start("clip-selector", &vars, clip_selector::run)
            .unwrap();
        services
            .start("status-store", &vars, status_store::run)
            .unwrap();
        services
            .start("room-manager", &vars, room_manager::run)
            .unwrap();
        services.start("llm", &vars, llm::run).unwrap();
        services.start("stt", &vars, stt::run).unwrap();
        services
            .start_with("pi-spawner", &spawner_args, &vars, pi_spawner::run)
            .unwrap();
        services
            .start("dashboard-gateway", &vars, dashboard_gateway::run)
            .unwrap();
        let bus = nats.bus("test").await;
        let world = World {
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            stack: None,
            services: Some(services),
            bus,
            token: None,
            nats,
            _library: library,
            _data: data,
        };
        world.ready().await;
        world
    }

    /// Waits until `/health` says every service answers and the simulated
    /// Pi's spawner is up.
    async fn ready(&self) {
        if let Some(failed) = self.services.as_ref().map(|s| s.failures())
            && !failed.is_empty()
        {
            panic!("{failed:?}");
        }
        let health = self.clone_http();
        let base = self.base.clone();
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
    }

    fn clone_http(&self) -> reqwest::Client {
        self.http.clone()
    }

    /// Sends a request to the gateway: its status and JSON body (`null` when
    /// the body is not JSON).
    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
        let req = match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
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
        // The gateway takes POSTs that say JSON only, with a body or not.
        let mut req = self
            .http
            .post(self.url(path))
            .header("content-type", "application/json");
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

    /// A session with a conversation in its record: the greeting and the
    /// answer to one typed line of the demo film. Its id.
    pub async fn answered_session(&self) -> String {
        let sid = self.connect().await["identifier"]
            .as_str()
            .unwrap()
            .to_string();
        let (code, _) = self
            .post(
                &format!("/api/sessions/{sid}/say"),
                Some(serde_json::json!({ "text": FILM.1[2] })),
            )
            .await;
        assert_eq!(code, 202);
        self.status_until(&sid, "the answer in the record", |s| {
            s["plays"].as_u64() >= Some(2)
        })
        .await;
        sid
    }

    /// `DELETE /api/cleanup-old-sessions?older_than_s=0`, checked to have
    /// removed ended session `sid`; the answer.
    pub async fn clean_up(&self, sid: &str) -> serde_json::Value {
        let (code, cleaned) = self
            .delete("/api/cleanup-old-sessions?older_than_s=0")
            .await;
        assert_eq!(code, 200, "{cleaned}");
        assert_eq!(cleaned["success"], true, "{cleaned}");
        assert!(
            cleaned["session_ids"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s == sid),
            "{cleaned}"
        );
        cleaned
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
        if let Some(s) = self.services.take() {
            s.stop().await;
        }
    }
}
