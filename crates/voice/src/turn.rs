//! Whether the visitor has finished their turn, from how they said it: Smart
//! Turn v3.2 (pipecat's audio turn-completion model, BSD-2: a Whisper-tiny
//! encoder and a classifier, int8) on [`features::LogMel`] of the last 8 s,
//! run by onnxruntime — its shared library loaded at run time from the
//! copy `scripts/setup` takes out of the PyPI wheel `onnxruntime`
//! (`CINEMA_ONNXRUNTIME`); the model comes out of the wheel `pipecat-ai`
//! (`CINEMA_TURN_MODEL`). Nothing is downloaded at run time. tract, the
//! pure-Rust runtime, runs this model but not to the same outputs (0.18
//! where onnxruntime says 0.90), so it is not used. `tests/turn.rs` checks
//! features and probabilities against pipecat's own Python on the same
//! audio.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use crate::features::{self, FRAMES, LogMel, N_MELS};

/// The model's file name inside its folder.
pub const MODEL_FILE: &str = "smart-turn-v3.2-cpu.onnx";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("onnxruntime ({}) cannot be loaded: {reason} (run scripts/setup, or set CINEMA_ONNXRUNTIME to libonnxruntime.so from the PyPI wheel onnxruntime)", path.display())]
    Runtime { path: PathBuf, reason: String },
    #[error("the turn model {} cannot be loaded: {reason} (run scripts/setup, or set CINEMA_TURN_MODEL to smart-turn-v3.2-cpu.onnx or its folder)", path.display())]
    Load { path: PathBuf, reason: String },
    #[error("the turn model failed: {0}")]
    Run(String),
}

/// The loaded model and its feature extractor, shared by a process's
/// sessions (one decision at a time; each takes tens of milliseconds).
pub struct TurnModel {
    session: Mutex<Session>,
    mel: LogMel,
}

/// The model file `spec` names: the file itself, or a folder holding it.
pub fn model_path(spec: &Path) -> PathBuf {
    if spec.is_dir() {
        spec.join(MODEL_FILE)
    } else {
        spec.to_path_buf()
    }
}

/// onnxruntime's environment: the library at `lib`, loaded once per process.
fn environment(lib: &Path) -> Result<ort::environment::Environment, Error> {
    static ENV: std::sync::OnceLock<Result<ort::environment::Environment, String>> =
        std::sync::OnceLock::new();
    let runtime = |reason: String| Error::Runtime {
        path: lib.to_path_buf(),
        reason,
    };
    if !lib.is_file() {
        return Err(runtime("no such file".into()));
    }
    ENV.get_or_init(|| {
        ort::init_from(lib)
            .map_err(|e| e.to_string())?
            .with_name("cinema-turn")
            .build()
            .map_err(|e| e.to_string())
    })
    .clone()
    .map_err(runtime)
}

impl TurnModel {
    /// Loads the model at `spec` on the onnxruntime library `lib`.
    pub fn load(lib: &Path, spec: &Path) -> Result<TurnModel, Error> {
        let env = environment(lib)?;
        let path = model_path(spec);
        let load_error = |e: ort::Error| Error::Load {
            path: path.clone(),
            reason: e.to_string(),
        };
        if !path.is_file() {
            return Err(Error::Load {
                path,
                reason: "no such file".into(),
            });
        }
        let session = Session::builder(&env)
            .map_err(load_error)?
            .with_intra_threads(1)
            .map_err(|e| load_error(e.into()))?
            .commit_from_file(&path)
            .map_err(load_error)?;
        Ok(TurnModel {
            session: Mutex::new(session),
            mel: LogMel::new(),
        })
    }

    /// The probability (0–1) that the turn is complete, given what was
    /// heard (16 kHz samples, ending now; the last 8 s count).
    pub fn complete(&self, pcm: &[i16]) -> Result<f32, Error> {
        let tail = &pcm[pcm.len().saturating_sub(features::WINDOW)..];
        let audio: Vec<f32> = tail.iter().map(|&s| s as f32 / 32768.0).collect();
        self.complete_f32(&audio)
    }

    /// [`TurnModel::complete`] on samples already in -1..1.
    pub fn complete_f32(&self, audio: &[f32]) -> Result<f32, Error> {
        let run = |e: ort::Error| Error::Run(e.to_string());
        let input = Tensor::from_array(([1usize, N_MELS, FRAMES], self.mel.features(audio)))
            .map_err(run)?;
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let out = session
            .run(ort::inputs!["input_features" => input])
            .map_err(run)?;
        let (_, probabilities) = out[0].try_extract_tensor::<f32>().map_err(run)?;
        let p = probabilities
            .first()
            .copied()
            .ok_or_else(|| Error::Run("the model gave no probability".into()))?;
        if !p.is_finite() {
            return Err(Error::Run(format!("the model gave {p}")));
        }
        Ok(p.clamp(0.0, 1.0))
    }

    /// The extractor's features of `audio` (for comparing with others').
    pub fn features(&self, audio: &[f32]) -> Vec<f32> {
        self.mel.features(audio)
    }
}

/// Where `scripts/setup` puts the model: `$CINEMA_MODELS_DIR/smart-turn-v3.2`
/// (by default `~/.local/share/cinema-chat/models/smart-turn-v3.2`).
pub fn default_path() -> PathBuf {
    models_dir().join("smart-turn-v3.2")
}

fn models_dir() -> PathBuf {
    std::env::var_os("CINEMA_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| PathBuf::from(h).join(".local/share/cinema-chat/models"))
        })
        .unwrap_or_else(|| PathBuf::from("models"))
}

/// Where `scripts/setup` puts onnxruntime's library:
/// `$CINEMA_MODELS_DIR/onnxruntime/libonnxruntime.so`.
pub fn default_runtime() -> PathBuf {
    models_dir().join("onnxruntime/libonnxruntime.so")
}

type Loaded = Result<std::sync::Arc<TurnModel>, String>;

/// The model at `spec` on the onnxruntime at `lib`, loaded once per
/// process and shared by every session; `Err` (said once in the log) when
/// it cannot be loaded.
pub fn shared(lib: &Path, spec: &Path) -> Loaded {
    static MODELS: std::sync::Mutex<Vec<(PathBuf, Loaded)>> = std::sync::Mutex::new(Vec::new());
    let mut models = MODELS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, m)) = models.iter().find(|(p, _)| p == spec) {
        return m.clone();
    }
    let started = std::time::Instant::now();
    let loaded = TurnModel::load(lib, spec)
        .map(std::sync::Arc::new)
        .map_err(|e| e.to_string());
    match &loaded {
        Ok(_) => {
            tracing::info!(model = %model_path(spec).display(), load_ms = started.elapsed().as_millis() as u64, "The turn model is loaded.")
        }
        Err(e) => tracing::warn!(error = %e, "Turn-taking falls back to silence only."),
    }
    models.push((spec.to_path_buf(), loaded.clone()));
    loaded
}

/// A judge for the endpointer on the shared model at `spec`; `None` (the
/// endpointer goes by silence) when the model cannot be loaded. A failed
/// decision is logged and left to the silence bound.
pub fn judge(lib: &Path, spec: &Path) -> Option<crate::vad::Judge> {
    let model = shared(lib, spec).ok()?;
    Some(Box::new(move |pcm: &[i16]| match model.complete(pcm) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(error = %e, "The turn model failed; the silence bound decides.");
            None
        }
    }))
}

/// The turn-taking settings of a service that has ears (pi-client, the
/// gateway's Talk page), flattened into its config: `turn_mode`
/// (`model` or `silence`), `turn_model` (`CINEMA_TURN_MODEL`: the ONNX file
/// or its folder; empty: [`default_path`]), and the judge's numbers.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct TurnConfig {
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub turn_mode: String,
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub turn_model: String,
    /// `CINEMA_ONNXRUNTIME`: onnxruntime's shared library (empty:
    /// [`default_runtime`]).
    #[serde(deserialize_with = "plumbing::config::lenient_string")]
    pub onnxruntime: String,
    /// Silence after which the model is first asked.
    pub turn_pause_ms: u32,
    /// Asked again every this long while the silence lasts.
    pub turn_recheck_ms: u32,
    /// A probability at or above this ends the turn at once.
    pub turn_complete_threshold: f32,
    /// Silence this long ends the turn whatever the model says.
    pub turn_max_silence_ms: u32,
}

impl Default for TurnConfig {
    fn default() -> Self {
        let d = crate::vad::TurnParams::default();
        TurnConfig {
            turn_mode: "model".into(),
            turn_model: String::new(),
            onnxruntime: String::new(),
            turn_pause_ms: d.pause_ms,
            turn_recheck_ms: d.recheck_ms,
            turn_complete_threshold: d.complete_threshold,
            turn_max_silence_ms: d.max_silence_ms,
        }
    }
}

impl TurnConfig {
    /// The endpointer's settings, or what is wrong with these.
    pub fn params(&self) -> Result<crate::vad::TurnParams, String> {
        let p = crate::vad::TurnParams {
            mode: self
                .turn_mode
                .parse()
                .map_err(|e| format!("turn_mode {e}"))?,
            pause_ms: self.turn_pause_ms,
            recheck_ms: self.turn_recheck_ms,
            complete_threshold: self.turn_complete_threshold,
            max_silence_ms: self.turn_max_silence_ms,
        };
        p.check()?;
        Ok(p)
    }

    /// The onnxruntime library these settings name.
    pub fn runtime(&self) -> PathBuf {
        if self.onnxruntime.is_empty() {
            default_runtime()
        } else {
            PathBuf::from(&self.onnxruntime)
        }
    }

    /// The model file or folder these settings name.
    pub fn model(&self) -> PathBuf {
        if self.turn_model.is_empty() {
            default_path()
        } else {
            PathBuf::from(&self.turn_model)
        }
    }
}
