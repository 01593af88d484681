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
    ) -> Result<Engine, whisper_rs::WhisperError> {
        let mut params = WhisperContextParameters::default();
        params.use_gpu(gpu);
        let ctx = WhisperContext::new_with_params(path, params)?;
        Ok(Engine {
            english_only: !ctx.is_multilingual(),
            ctx,
            threads: threads.clamp(1, 64) as i32,
            no_speech_threshold,
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
        let mut params = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
        params.set_n_threads(engine.threads);
        params.set_language(Some(if engine.english_only { "en" } else { "auto" }));
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
        // probability from: never drop here, decide below with the threshold.
        params.set_no_speech_thold(1.0);
        params.set_print_special(false);
        params.set_print_progress(false);
        params.set_print_realtime(false);
        params.set_print_timestamps(false);
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
    use super::clean_text;

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
