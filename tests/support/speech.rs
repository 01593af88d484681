//! Speech for the tests: the Whisper model, espeak-ng utterances put on
//! the work queue, and stt processes.

use crate::kill9;
use std::time::Duration;

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
        turn_end: "silence".into(),
        turn_complete: -1.0,
        ..Default::default()
    }
}

/// Records session `sid` as Pi `pi`'s in the sessions bucket, as
/// room-manager does when it creates one (once; an existing session is
/// left as it is): stt and status-store take a Pi's word only for its own
/// sessions.
pub async fn assign_session(bus: &bus::Bus, sid: &str, pi: &str) {
    let sessions = bus.kv(bus::names::SESSIONS_BUCKET).await.unwrap();
    let session = wire::v1::Session {
        id: sid.into(),
        pi_id: pi.into(),
        ..Default::default()
    };
    bus::kv_cas(&sessions, sid, &session, 0).await.unwrap();
}

/// Puts an utterance on the work queue, as pi-client does (the session is
/// the test Pi's).
pub async fn send_utterance(bus: &bus::Bus, u: &wire::v1::Utterance) {
    assign_session(bus, &u.session_id, "test-pi").await;
    bus.publish_durable(
        bus::subjects::utterance("test-pi", &u.session_id),
        u,
        &format!("utterance-{}", u.utterance_id),
    )
    .await
    .unwrap();
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
