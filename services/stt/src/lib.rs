//! stt: speech-to-text workers on the utterance work queue.
//!
//! Each process loads one Whisper model (whisper.cpp through whisper-rs) and
//! runs `workers` decoding states. Workers share the durable pull consumer
//! `stt` on CINEMA_UTTERANCES with every other stt process: a worker pulls an
//! utterance only when it is free, transcribes it on the blocking pool
//! (progress acks keep a long one alive), publishes the final transcript
//! with a message id (a redelivered utterance records one transcript), and
//! acks only after the publish. Bad input is refused for good (`+TERM` with
//! the reason) and logged.

pub mod audio;
pub mod engine;
pub mod model;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bus::Bus;
use bus::async_nats::jetstream::consumer::PullConsumer;
use bus::async_nats::jetstream::{AckKind, Message};
use bus::names;
use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{Transcript, TranscriptSource, Utterance};

use engine::{Engine, Recognizer};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// `WHISPER_MODEL`: a model name (`tiny.en`, `base.en`, …) kept as
    /// `<models_dir>/ggml-<name>.bin`, or a path to a ggml model file.
    pub model: String,
    /// `WHISPER_MODELS_DIR`: where named models live (and are downloaded to).
    pub models_dir: PathBuf,
    /// `WHISPER_DEVICE`: `cpu`, or `cuda` in a build with the `cuda` feature.
    pub device: String,
    /// Threads of one inference.
    pub threads: u32,
    /// Utterances transcribed at once by this process (one state each).
    pub workers: u32,
    /// Deliveries of one utterance before it is given up.
    pub max_deliveries: u32,
    /// Longer utterances are refused.
    pub max_utterance_s: u32,
    /// Above this no-speech probability a transcript's text is empty.
    pub no_speech_threshold: f32,
    /// `WHISPER_AUDIO_CTX`: how much of Whisper's 30 s encoder window an
    /// utterance gets — `fit` (a 7.68 s window for utterances up to 6.4 s,
    /// about five times faster; the whole window for longer ones), `full`,
    /// or 1-1500 positions (50 per second of audio).
    pub audio_ctx: String,
    /// Where a named model missing from `models_dir` is downloaded from.
    pub download_url: String,
    /// An utterance not acked (or progressed) within this goes to another worker.
    pub ack_wait_s: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            model: "tiny.en".into(),
            models_dir: model::default_models_dir(),
            device: "cpu".into(),
            threads: 2,
            workers: 1,
            max_deliveries: 3,
            max_utterance_s: 30,
            no_speech_threshold: 0.6,
            audio_ctx: "fit".into(),
            download_url: "https://huggingface.co/ggerganov/whisper.cpp/resolve/main".into(),
            ack_wait_s: 30,
        }
    }
}

/// True when this build can run inference on an NVIDIA GPU.
pub const CUDA_BUILD: bool = cfg!(feature = "cuda");

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_STT_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("WHISPER_MODEL", "model"),
        ("WHISPER_MODELS_DIR", "models_dir"),
        ("WHISPER_DEVICE", "device"),
        ("WHISPER_AUDIO_CTX", "audio_ctx"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        match self.device.as_str() {
            "cpu" => {}
            "cuda" if CUDA_BUILD => {}
            "cuda" => {
                return Err("device (WHISPER_DEVICE) `cuda` needs stt built with the `cuda` feature (`cargo build --release -p stt --features cuda`); this build runs on the CPU only: set WHISPER_DEVICE=cpu".into());
            }
            other => {
                return Err(format!(
                    "device (WHISPER_DEVICE) must be `cpu` or `cuda`, got {other:?}"
                ));
            }
        }
        if self.threads == 0 || self.workers == 0 || self.max_deliveries == 0 {
            return Err("threads, workers and max_deliveries must be above 0".into());
        }
        if self.max_utterance_s == 0 || self.max_utterance_s > 600 {
            return Err("max_utterance_s must be 1-600".into());
        }
        if self.ack_wait_s < 2 {
            return Err("ack_wait_s must be at least 2".into());
        }
        engine::AudioCtx::parse(&self.audio_ctx)?;
        if !(0.0..=1.0).contains(&self.no_speech_threshold) {
            return Err("no_speech_threshold must be between 0 and 1".into());
        }
        if !(self.download_url.starts_with("https://") || self.download_url.starts_with("http://"))
        {
            return Err(format!(
                "download_url must be an http(s) URL, got {:?}",
                self.download_url
            ));
        }
        match model::resolve(&self.model, &self.models_dir)? {
            model::ModelRef::File(path) if !path.is_file() => Err(format!(
                "model (WHISPER_MODEL) {} is not a file",
                path.display()
            )),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("model file {} does not exist (WHISPER_MODEL)", path.display())]
    MissingModel { path: PathBuf },
    #[error(
        "the Whisper model {} is missing and downloading it from {url} failed: {reason}; put the file there, or set WHISPER_MODELS_DIR to a folder that has it, or WHISPER_MODEL to a model file",
        path.display()
    )]
    Download {
        path: PathBuf,
        url: String,
        reason: String,
    },
    #[error("cannot load the Whisper model {} (WHISPER_MODEL): {reason}", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

/// Utterances this process refused (bad audio, undecodable payloads).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// How many utterances this process refused as bad input.
pub fn refused() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// How long one pull waits for an utterance before it asks again.
const PULL_EXPIRES: Duration = Duration::from_secs(2);
/// Delay before an utterance whose transcript could not be published, or
/// whose inference failed, is tried again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    whisper_rs::install_logging_hooks();
    let model_ref = model::resolve(&config.model, &config.models_dir).map_err(Error::Config)?;
    let path = tokio::select! {
        p = model::ensure(&model_ref, &config.download_url) => p?,
        () = shutdown.cancelled() => return Ok(()),
    };
    let started = Instant::now();
    let load_error = |reason: String| Error::Load {
        path: path.clone(),
        reason,
    };
    let engine = {
        let path = path.clone();
        let gpu = config.device == "cuda";
        let (threads, threshold) = (config.threads, config.no_speech_threshold);
        let audio_ctx = engine::AudioCtx::parse(&config.audio_ctx).map_err(load_error)?;
        tokio::task::spawn_blocking(move || Engine::load(&path, gpu, threads, threshold, audio_ctx))
            .await
            .map_err(|e| load_error(e.to_string()))?
            .map_err(|e| load_error(e.to_string()))?
    };
    let engine = Arc::new(engine);
    let mut recognizers = Vec::new();
    for _ in 0..config.workers {
        recognizers.push(engine.recognizer().map_err(|e| load_error(e.to_string()))?);
    }
    tracing::info!(
        model = %path.display(),
        device = %config.device,
        english_only = engine.english_only(),
        threads = config.threads,
        audio_ctx = %config.audio_ctx,
        workers = config.workers,
        load_ms = started.elapsed().as_millis() as u64,
        "The Whisper model is loaded."
    );

    let ack_wait = Duration::from_secs(config.ack_wait_s);
    let consumer = bus
        .consumer(&bus::consumers::stt(ack_wait, config.max_deliveries))
        .await?;
    let service = bus::service::start(bus.client(), names::service::STT, "Speech to text").await?;
    tracing::info!("stt is ready for utterances.");

    let worker = Arc::new(Worker {
        owners: bus::owners::Owners::new(bus.clone()),
        bus,
        config,
        engine,
        ack_wait,
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (i, recognizer) in recognizers.into_iter().enumerate() {
        tasks.spawn(
            worker
                .clone()
                .pull_loop(i, consumer.clone(), recognizer, shutdown.clone()),
        );
    }
    while tasks.join_next().await.is_some() {}
    let _ = service.stop().await;
    Ok(())
}

struct Worker {
    bus: Bus,
    /// Which Pi each session is: a Pi's utterance counts only for its own.
    owners: bus::owners::Owners,
    config: Config,
    engine: Arc<Engine>,
    ack_wait: Duration,
}

/// How one utterance ended.
enum Outcome {
    /// Published; ack.
    Done,
    /// Bad input: never again.
    Refused(String),
    /// Try again after a delay (or give up after the last delivery).
    Retry(String),
}

impl Worker {
    /// Pulls one utterance at a time, only while free, so an utterance never
    /// waits in this process while another worker could take it.
    async fn pull_loop(
        self: Arc<Self>,
        index: usize,
        consumer: PullConsumer,
        recognizer: Recognizer,
        shutdown: CancellationToken,
    ) {
        let mut recognizer = Some(recognizer);
        while !shutdown.is_cancelled() {
            let batch = consumer
                .batch()
                .max_messages(1)
                .expires(PULL_EXPIRES)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(worker = index, error = %e, "Cannot pull utterances; trying again.");
                    tokio::select! {
                        () = tokio::time::sleep(RETRY_DELAY) => continue,
                        () = shutdown.cancelled() => break,
                    }
                }
            };
            loop {
                let next = tokio::select! {
                    n = batch.next() => n,
                    () = shutdown.cancelled() => {
                        // Whatever this pull still brings goes back at once.
                        while let Ok(Some(m)) = tokio::time::timeout(PULL_EXPIRES, batch.next()).await {
                            if let Ok(m) = m {
                                let _ = m.ack_with(AckKind::Nak(None)).await;
                            }
                        }
                        break;
                    }
                };
                match next {
                    Some(Ok(msg)) => self.handle(msg, &mut recognizer).await,
                    Some(Err(e)) => {
                        tracing::debug!(worker = index, error = %e, "A pull ended early.");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Transcribes one utterance and settles its message.
    async fn handle(&self, msg: Message, recognizer: &mut Option<Recognizer>) {
        let received_ms = now_ms();
        let (published_ms, delivered) = msg
            .info()
            .map(|i| {
                (
                    (i.published.unix_timestamp_nanos() / 1_000_000) as i64,
                    i.delivered,
                )
            })
            .unwrap_or((received_ms, 1));
        let (pi, sid) = subjects::parse_utterance_from(&msg.subject)
            .map(|(pi, sid)| (pi.to_string(), sid.to_string()))
            .unwrap_or_default();
        let decoded = bus::decode::<Utterance>(msg.headers.as_ref(), &msg.payload);
        let utterance_id = decoded
            .as_ref()
            .map(|u| u.utterance_id.clone())
            .unwrap_or_default();
        let outcome = match decoded {
            Err(e) => Outcome::Refused(format!("undecodable utterance: {e}")),
            Ok(u) => match self.owners.check(&pi, &sid).await {
                Err(e) => Outcome::Retry(format!("cannot tell whose session {sid} is: {e}")),
                Ok(verdict) => match verdict.refusal(&pi, &sid) {
                    Some(why) => Outcome::Refused(why),
                    None => {
                        let queue_wait_ms = (received_ms - published_ms).max(0);
                        self.transcribe(&msg, &sid, u, queue_wait_ms, recognizer)
                            .await
                    }
                },
            },
        };
        let settled = match outcome {
            Outcome::Done => msg.ack().await,
            Outcome::Refused(reason) => {
                let total = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    session = %sid,
                    utterance = %utterance_id,
                    reason = %reason,
                    refused_total = total,
                    "Refused an utterance."
                );
                bus::term(self.bus.client(), &msg, &reason)
                    .await
                    .map_err(Into::into)
            }
            Outcome::Retry(reason) if delivered >= i64::from(self.config.max_deliveries) => {
                tracing::warn!(
                    session = %sid,
                    utterance = %utterance_id,
                    reason = %reason,
                    delivered,
                    "Gave up on an utterance after its last delivery."
                );
                bus::term(self.bus.client(), &msg, &reason)
                    .await
                    .map_err(Into::into)
            }
            Outcome::Retry(reason) => {
                tracing::warn!(
                    session = %sid,
                    utterance = %utterance_id,
                    reason = %reason,
                    delivered,
                    "An utterance will be tried again."
                );
                msg.ack_with(AckKind::Nak(Some(RETRY_DELAY))).await
            }
        };
        if let Err(e) = settled {
            tracing::warn!(session = %sid, utterance = %utterance_id, error = %e, "Cannot settle an utterance; it will come back.");
        }
    }

    async fn transcribe(
        &self,
        msg: &Message,
        sid: &str,
        u: Utterance,
        queue_wait_ms: i64,
        recognizer: &mut Option<Recognizer>,
    ) -> Outcome {
        if let Err(e) = subjects::check_id("session id", sid) {
            return Outcome::Refused(e.to_string());
        }
        if !u.session_id.is_empty() && u.session_id != sid {
            return Outcome::Refused(format!(
                "utterance of session {:?} published under session {sid}",
                u.session_id
            ));
        }
        if let Err(e) = subjects::check_id("utterance id", &u.utterance_id) {
            return Outcome::Refused(e.to_string());
        }
        let samples = match audio::decode_pcm(u.sample_rate, &u.pcm, self.config.max_utterance_s) {
            Ok(s) => audio::pad_to_min(s),
            Err(e) => return Outcome::Refused(e.to_string()),
        };
        let mut rec = match recognizer.take() {
            Some(r) => r,
            None => match self.engine.recognizer() {
                Ok(r) => r,
                Err(e) => return Outcome::Retry(format!("cannot make a Whisper state: {e}")),
            },
        };

        // Inference on the blocking pool; progress acks while it runs long.
        let mut job = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let heard = rec.transcribe(&samples);
            (rec, heard, started.elapsed())
        });
        let half = self.ack_wait / 2;
        let mut progress = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
        let joined = loop {
            tokio::select! {
                j = &mut job => break j,
                _ = progress.tick() => {
                    if let Err(e) = msg.ack_with(AckKind::Progress).await {
                        tracing::debug!(error = %e, "Cannot send a progress ack.");
                    }
                }
            }
        };
        let (heard, inference) = match joined {
            Ok((rec, heard, took)) => {
                *recognizer = Some(rec);
                (heard, took)
            }
            Err(e) => return Outcome::Retry(format!("inference crashed: {e}")),
        };
        let heard = match heard {
            Ok(h) => h,
            Err(e) => return Outcome::Retry(format!("inference failed: {e}")),
        };

        let transcript = Transcript {
            session_id: sid.to_string(),
            utterance_id: u.utterance_id.clone(),
            text: heard.text,
            language: heard.language,
            no_speech_prob: heard.no_speech_prob,
            is_final: true,
            source: TranscriptSource::Speech as i32,
            at_ms: now_ms(),
            queue_wait_ms: u32::try_from(queue_wait_ms).unwrap_or(u32::MAX),
            inference_ms: u32::try_from(inference.as_millis()).unwrap_or(u32::MAX),
            speech_end_ms: u.speech_end_ms,
        };
        let published = self
            .bus
            .publish_durable(
                subjects::session(sid, SessionEvent::Transcript),
                &transcript,
                &bus::ids::transcript(&u.utterance_id),
            )
            .await;
        match published {
            Ok(()) => {
                tracing::info!(
                    session = %sid,
                    utterance = %u.utterance_id,
                    audio_ms = (audio::duration_s(u.pcm.len() / 2) * 1000.0) as u64,
                    inference_ms = transcript.inference_ms,
                    queue_wait_ms = transcript.queue_wait_ms,
                    no_speech_prob = transcript.no_speech_prob,
                    empty = transcript.text.is_empty(),
                    "Transcribed an utterance."
                );
                Outcome::Done
            }
            Err(e) => Outcome::Retry(format!("cannot publish the transcript: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumbing::Settings;

    #[test]
    fn settings_are_checked() {
        let ok = Config::default();
        assert_eq!(ok.validate(), Ok(()));
        assert!(ok.models_dir.ends_with("cinema-chat/models"));

        let cuda = Config {
            device: "cuda".into(),
            ..Config::default()
        };
        if CUDA_BUILD {
            assert_eq!(cuda.validate(), Ok(()));
        } else {
            let e = cuda.validate().unwrap_err();
            assert!(
                e.contains("WHISPER_DEVICE") && e.contains("`cuda` feature"),
                "{e}"
            );
        }
        let bad: [(Config, &str); 7] = [
            (
                Config {
                    device: "gpu".into(),
                    ..Config::default()
                },
                "device",
            ),
            (
                Config {
                    workers: 0,
                    ..Config::default()
                },
                "workers",
            ),
            (
                Config {
                    ack_wait_s: 1,
                    ..Config::default()
                },
                "ack_wait_s",
            ),
            (
                Config {
                    no_speech_threshold: 1.5,
                    ..Config::default()
                },
                "no_speech_threshold",
            ),
            (
                Config {
                    audio_ctx: "2000".into(),
                    ..Config::default()
                },
                "audio_ctx",
            ),
            (
                Config {
                    download_url: "ftp://x".into(),
                    ..Config::default()
                },
                "download_url",
            ),
            (
                Config {
                    model: "/no/such/ggml-x.bin".into(),
                    ..Config::default()
                },
                "/no/such/ggml-x.bin",
            ),
        ];
        for (config, says) in bad {
            let e = config.validate().unwrap_err();
            assert!(e.contains(says), "{says}: {e}");
        }
    }
}
