//! stt: speech-to-text workers on the utterance work queue.
//!
//! This build registers the service (so health and discovery see it) and
//! holds the durable consumer's place; transcription with whisper-rs comes
//! with the voice-input work (see ARCHITECTURE.md, "State of the services").

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// `WHISPER_MODEL`: a model name (`tiny.en`) or a path.
    pub model: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            model: "tiny.en".into(),
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_STT_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[("WHISPER_MODEL", "model")];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
}

pub async fn run(config: Config, bus: bus::Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let service =
        bus::service::start(bus.client(), bus::names::service::STT, "Speech to text").await?;
    tracing::warn!(model = %config.model, "Speech input is not transcribed by this build yet; typed lines work.");
    shutdown.cancelled().await;
    let _ = service.stop().await;
    Ok(())
}
