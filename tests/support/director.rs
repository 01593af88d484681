//! The director's world without a Pi ([`DirectorRig`]) and the second
//! film its long conversations need.

use crate::FILM;
use std::time::Duration;

use testkit::NatsServer;

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

/// The director's world without a Pi: NATS, a real clip-selector over a
/// synthetic library, and `replicas` llm instances with `env`, all in this
/// process (each on its own NATS connection, as separate processes would
/// be). Events are published on the bus as room-manager and stt would.
pub struct DirectorRig {
    pub bus: bus::Bus,
    pub services: plumbing::in_process::InProcess,
    pub nats: NatsServer,
    _library: tempfile::TempDir,
}

impl DirectorRig {
    pub async fn start(env: &[(&str, &str)], replicas: usize) -> DirectorRig {
        DirectorRig::start_parts(env, replicas, true).await
    }

    /// The llm replicas only: clip-selector comes later, with
    /// [`DirectorRig::start_library`].
    pub async fn start_without_library(env: &[(&str, &str)]) -> DirectorRig {
        DirectorRig::start_parts(env, 1, false).await
    }

    /// Starts one more llm replica in this process, with `env`.
    pub fn start_llm(&self, env: &[(&str, &str)]) {
        let vars: Vec<(String, String)> = [("NATS_URL", self.nats.url().as_str())]
            .iter()
            .chain(env)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.services.start("llm", &vars, llm::run).unwrap();
    }

    /// How many llm replicas answer on the services API now.
    pub async fn llm_replicas(&self) -> usize {
        bus::service::ping_all(self.bus.client(), Duration::from_millis(300))
            .await
            .map(|up| {
                up.iter()
                    .filter(|i| i.name == bus::names::service::LLM)
                    .count()
            })
            .unwrap_or(0)
    }

    /// Starts clip-selector (after [`DirectorRig::start_without_library`]).
    pub fn start_library(&self) {
        let vars = vec![
            ("NATS_URL".to_string(), self.nats.url()),
            (
                "CINEMA_LIBRARY".to_string(),
                self._library.path().display().to_string(),
            ),
            (
                "CINEMA_CLIP_SELECTOR_MEDIA_ADDR".to_string(),
                "127.0.0.1:0".to_string(),
            ),
        ];
        self.services
            .start("clip-selector", &vars, clip_selector::run)
            .unwrap();
    }

    async fn start_parts(env: &[(&str, &str)], replicas: usize, library_too: bool) -> DirectorRig {
        let nats = NatsServer::start();
        let library = testkit::film_library(&[FILM, FILM_TWO]);
        let bus = nats.bus("test").await;
        let vars = |extra: &[(&str, &str)]| -> Vec<(String, String)> {
            [
                ("NATS_URL", nats.url().as_str()),
                ("CINEMA_LIBRARY", library.path().to_str().unwrap()),
                ("CINEMA_CLIP_SELECTOR_MEDIA_ADDR", "127.0.0.1:0"),
            ]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        };
        let services = plumbing::in_process::InProcess::new(2).unwrap();
        if library_too {
            services
                .start("clip-selector", &vars(&[]), clip_selector::run)
                .unwrap();
        }
        for _ in 0..replicas {
            services.start("llm", &vars(env), llm::run).unwrap();
        }
        testkit::eventually(
            Duration::from_secs(60),
            "clip-selector and every llm replica to answer",
            async || {
                let failed = services.failures();
                assert!(failed.is_empty(), "{failed:?}");
                let up = bus::service::ping_all(bus.client(), Duration::from_millis(300))
                    .await
                    .ok()?;
                let llms = up
                    .iter()
                    .filter(|i| i.name == bus::names::service::LLM)
                    .count();
                if !library_too {
                    return (llms == replicas).then_some(());
                }
                // clip-selector answers during its first ingest: ready once
                // its library is loaded.
                let films: wire::v1::FilmList = bus
                    .request(
                        &bus::endpoints::clips::FILMS,
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
            services,
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
