//! whisper.cpp through whisper-rs: one model per process ([`Engine`]), one
//! decoding state per worker ([`Recognizer`]). Calls block; callers run them
//! on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use whisper_rs::{
    FullParams, SamplingStrategy, WhisperContext, WhisperContextParameters, WhisperState,
};

/// The loaded model, shared by every worker of the process.
pub struct Engine {
    ctx: WhisperContext,
    english_only: bool,
    threads: i32,
    no_speech_threshold: f32,
    audio_ctx: AudioCtx,
}

/// How much of Whisper's 30 s encoder window an utterance is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioCtx {
    /// The whole 30 s window, however short the utterance (whisper.cpp's default).
    Full,
    /// A short window ([`SHORT_CTX`] positions, 7.68 s) for utterances that
    /// fit in it with a margin, the whole window for longer ones. The
    /// encoder's work shrinks with the window: a short line is transcribed
    /// about five times faster. Measured with tiny.en (`cargo bench -p tests
    /// --bench whisper`): smaller windows make short lines repeat themselves
    /// ("Where am I? Where am I? …"), and long speech in any shortened window
    /// loses its end, so neither is offered.
    Fit,
    /// A fixed number of encoder positions (1500 = 30 s), for experiments.
    Fixed(u16),
}

/// Encoder positions per second of audio (1500 for 30 s).
const CTX_PER_S: f64 = 50.0;
/// The short window of [`AudioCtx::Fit`].
pub const SHORT_CTX: usize = 384;
/// Positions left free after the speech in the short window.
const FIT_MARGIN: usize = 64;
/// The whole window.
pub const FULL_CTX: usize = 1500;

impl AudioCtx {
    /// `full`, `fit` or a number of positions (1-1500).
    pub fn parse(s: &str) -> Result<AudioCtx, String> {
        match s.trim() {
            "full" => Ok(AudioCtx::Full),
            "fit" | "auto" => Ok(AudioCtx::Fit),
            n => match n.parse::<u16>() {
                Ok(n) if (1..=FULL_CTX as u16).contains(&n) => Ok(AudioCtx::Fixed(n)),
                _ => Err(format!(
                    "audio_ctx must be `fit`, `full` or 1-{FULL_CTX} encoder positions (50 per second), got {s:?}"
                )),
            },
        }
    }

    /// The `audio_ctx` whisper.cpp gets for `samples` 16 kHz samples (0 = full).
    pub fn positions(self, samples: usize) -> i32 {
        match self {
            AudioCtx::Full => 0,
            AudioCtx::Fixed(n) => i32::from(n),
            AudioCtx::Fit => {
                let speech = (samples as f64 / 16_000.0 * CTX_PER_S).ceil() as usize;
                if speech + FIT_MARGIN <= SHORT_CTX {
                    SHORT_CTX as i32
                } else {
                    0
                }
            }
        }
    }
}

/// The decoding parameters of every utterance (shared with the benchmark
/// that compares the service with whisper-rs called directly).
pub fn params(threads: i32, english_only: bool, audio_ctx: i32) -> FullParams<'static, 'static> {
    let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(threads);
    params.set_language(Some(if english_only { "en" } else { "auto" }));
    params.set_translate(false);
    // Each utterance stands alone: no text of an earlier one (perhaps of
    // another session) as the prompt.
    params.set_no_context(true);
    // Timestamp mode keeps <|notimestamps|> out of the prompt, so the
    // no-speech probability is read right after <|startoftranscript|>,
    // where Whisper was trained to predict <|nospeech|>.
    params.set_no_timestamps(false);
    params.set_token_timestamps(false);
    params.set_single_segment(false);
    params.set_suppress_nst(true);
    // whisper.cpp drops a window whose no-speech probability is over its
    // threshold (and the decoding unsure), leaving no segment to read the
    // probability from: never drop here, decide with the threshold after.
    params.set_no_speech_thold(1.0);
    params.set_audio_ctx(audio_ctx);
    params.set_print_special(false);
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_timestamps(false);
    params
}

/// What Whisper heard in one utterance.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    /// Segments joined and cleaned; empty when nothing was said.
    pub text: String,
    pub language: String,
    /// The highest no-speech probability over the segments.
    pub no_speech_prob: f32,
}

impl Engine {
    /// Loads the model (once per process).
    pub fn load(
        path: &Path,
        gpu: bool,
        threads: u32,
        no_speech_threshold: f32,
        audio_ctx: AudioCtx,
    ) -> Result<Engine, whisper_rs::WhisperError> {
        let mut params = WhisperContextParameters::default();
        params.use_gpu(gpu);
        let ctx = WhisperContext::new_with_params(path, params)?;
        Ok(Engine {
            english_only: !ctx.is_multilingual(),
            ctx,
            threads: threads.clamp(1, 64) as i32,
            no_speech_threshold,
            audio_ctx,
        })
    }

    /// True for the `.en` models: they only transcribe English.
    pub fn english_only(&self) -> bool {
        self.english_only
    }

    /// A decoding state for one worker.
    pub fn recognizer(self: &Arc<Self>) -> Result<Recognizer, whisper_rs::WhisperError> {
        Ok(Recognizer {
            state: self.ctx.create_state()?,
            engine: self.clone(),
        })
    }
}

/// One worker's decoding state.
pub struct Recognizer {
    state: WhisperState,
    engine: Arc<Engine>,
}

impl Recognizer {
    /// Transcribes 16 kHz mono samples (at least one second; see
    /// [`crate::audio::pad_to_min`]).
    pub fn transcribe(&mut self, samples: &[f32]) -> Result<Heard, whisper_rs::WhisperError> {
        let engine = &self.engine;
        let params = params(
            engine.threads,
            engine.english_only,
            engine.audio_ctx.positions(samples.len()),
        );
        self.state.full(params, samples)?;

        let mut texts = Vec::new();
        let mut no_speech_prob: Option<f32> = None;
        for segment in self.state.as_iter() {
            texts.push(segment.to_str_lossy()?.into_owned());
            let p = segment.no_speech_probability();
            no_speech_prob = Some(no_speech_prob.map_or(p, |q| q.max(p)));
        }
        let language = if engine.english_only {
            "en".to_string()
        } else {
            whisper_rs::get_lang_str(self.state.full_lang_id_from_state())
                .unwrap_or_default()
                .to_string()
        };
        // No segment at all: nothing was heard.
        let no_speech_prob = no_speech_prob.unwrap_or(1.0);
        let mut text = clean_text(&texts);
        if no_speech_prob > engine.no_speech_threshold {
            text.clear();
        }
        Ok(Heard {
            text,
            language,
            no_speech_prob,
        })
    }
}

/// Joins segment texts, drops what is not speech — bracketed annotations such
/// as `[BLANK_AUDIO]`, `(music)` or `*laughs*`, and music notes — and
/// normalises spaces. Returns "" when no word is left.
pub fn clean_text<S: AsRef<str>>(segments: &[S]) -> String {
    let mut out = String::new();
    for segment in segments {
        let mut closing: Option<char> = None;
        for c in segment.as_ref().chars() {
            if let Some(close) = closing {
                if c == close {
                    closing = None;
                }
                continue;
            }
            match c {
                '[' => closing = Some(']'),
                '(' => closing = Some(')'),
                '*' => closing = Some('*'),
                '♪' | '♫' | '♬' | '♩' => {}
                _ => out.push(c),
            }
        }
        out.push(' ');
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    if !words.iter().any(|w| w.chars().any(char::is_alphanumeric)) {
        return String::new();
    }
    words.join(" ")
}

#[cfg(test)]
mod tests {
    use super::{AudioCtx, clean_text};

    #[test]
    fn audio_ctx_fits_the_utterance() {
        // Up to 6.4 s: the short window; beyond: the whole one.
        assert_eq!(AudioCtx::Fit.positions(16_000), 384);
        assert_eq!(AudioCtx::Fit.positions(6 * 16_000), 384);
        assert_eq!(AudioCtx::Fit.positions(6 * 16_000 + 6_400), 384);
        assert_eq!(AudioCtx::Fit.positions(6 * 16_000 + 6_401), 0);
        assert_eq!(AudioCtx::Fit.positions(20 * 16_000), 0);
        assert_eq!(AudioCtx::Full.positions(16_000), 0);
        assert_eq!(AudioCtx::Fixed(768).positions(16_000), 768);
        assert_eq!(AudioCtx::parse("fit"), Ok(AudioCtx::Fit));
        assert_eq!(AudioCtx::parse("full"), Ok(AudioCtx::Full));
        assert_eq!(AudioCtx::parse("300"), Ok(AudioCtx::Fixed(300)));
        for bad in ["0", "1501", "-3", "half", ""] {
            assert!(AudioCtx::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn non_speech_is_stripped() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[" Where is the train station?"],
                "Where is the train station?",
            ),
            (&[" Hello.", " How are you?"], "Hello. How are you?"),
            (&[" [BLANK_AUDIO]"], ""),
            (&["(music)"], ""),
            (&[" [Music]", " (wind blowing) "], ""),
            (&[" ♪ ♪ ♪"], ""),
            (&["*laughs*"], ""),
            (&[" ..."], ""),
            (&[" [BLANK_AUDIO] Hello there. (coughs)"], "Hello there."),
            (&["Hi [inaudible] friend"], "Hi friend"),
            (&["   "], ""),
            (&[], ""),
            // An unclosed bracket drops the rest of its segment only.
            (&["Yes [unclear", " no"], "Yes no"),
            (&[" 42."], "42."),
        ];
        for (segments, want) in cases {
            assert_eq!(clean_text(segments), *want, "{segments:?}");
        }
    }
}
