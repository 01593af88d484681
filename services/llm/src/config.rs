//! The director's configuration (`CINEMA_LLM_*`, and the first
//! generation's `CINEMA_DIRECTOR`, `OPENAI_*`, `LLM_MODEL`), checked when
//! it is read: which director and flow are typed, so a wrong word is
//! refused by name.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Who chooses the clips.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum DirectorKind {
    /// Offline: the line that followed the most similar line in a film.
    #[default]
    #[serde(rename = "retrieval")]
    Retrieval,
    /// A chat-completions model with the library as tools.
    #[serde(rename = "openai")]
    OpenAi,
}

impl std::fmt::Display for DirectorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DirectorKind::Retrieval => "retrieval",
            DirectorKind::OpenAi => "openai",
        })
    }
}

/// How a model is asked (the `openai` director).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Flow {
    /// Search first; one model request per turn chooses among the options.
    #[default]
    #[serde(rename = "single")]
    Single,
    /// The model searches, then plays.
    #[serde(rename = "two-step")]
    TwoStep,
}

impl std::fmt::Display for Flow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Flow::Single => "single",
            Flow::TwoStep => "two-step",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// `retrieval` (offline, default) or `openai`.
    pub director: DirectorKind,
    /// What the greeting search looks for.
    pub greeting_query: String,
    /// Generic replies searched when nothing else matches.
    pub fallback_queries: Vec<String>,
    /// What the invite to a quiet visitor looks for (a line such as "Hello?
    /// Are you still there?"), and the goodbye before a gone one's session
    /// ends; room-manager says when (`invite_after_s`, `goodbye_after_s`).
    pub invite_query: String,
    pub goodbye_query: String,
    /// Options searched per query (and shown to a model).
    pub options: u32,
    /// The retrieval director answers with a film line only when the
    /// library judges it this likely (0 to 1) to answer the visitor's line;
    /// below, nothing fits and it plays its best generic reply.
    pub min_fit: f32,
    /// Makes choices repeatable: the same seed, library and lines give the
    /// same clips (also sent to the model as its `seed`).
    pub seed: Option<u64>,
    /// The retrieval director picks among this many best options (by the
    /// seed, the session and the turn); 1 always takes the best.
    pub variety: u32,
    /// `openai` mode: any OpenAI-compatible chat-completions endpoint.
    pub openai_api_key: String,
    pub openai_base_url: String,
    pub model: String,
    /// `single` (search first, one model request per turn) or `two-step`
    /// (the model searches, then plays).
    pub flow: Flow,
    /// Per model request.
    pub timeout_ms: u64,
    pub max_tokens: u32,
    /// Retries of a request the endpoint answered with 429 or 5xx (with
    /// backoff, within `timeout_ms`); 0 falls back to retrieval at once.
    pub model_retries: u32,
    /// Model requests per turn at most (two-step may search more than once).
    pub max_rounds: u32,
    /// Exchanges of the session given to the model as context.
    pub history_turns: u32,
    /// A file with the system prompt; the built-in one when unset.
    pub prompt_file: Option<PathBuf>,
    /// How long an event waits for an earlier event of its session (being
    /// decided on another replica) before it is decided anyway.
    pub order_wait_ms: u64,
    /// How long a greeting or a turn is tried again, with backoff, while a
    /// part it needs is down or still starting (clip-selector ingesting,
    /// NATS timing out) before it is given up with the reason in the
    /// session's record.
    pub retry_for_s: u64,
    /// A line that stops mid-phrase ("Tell me about", "Um.") waits this long
    /// for the visitor's next line, and the two are answered as one; 0
    /// answers such a line as it comes.
    pub join_within_ms: u64,
    /// A statement ("Hello television.") waits this long for a question
    /// after it; 0 answers statements as they come. Questions never wait.
    pub statement_wait_ms: u64,
    /// While a line waits, the visitor speaking again (the Pi's ears say so
    /// on the audio subject) keeps it waiting until this long after they
    /// stop, for the line that speech becomes.
    pub after_speech_ms: u64,
    /// No line waits longer than this in all.
    pub max_hold_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            director: DirectorKind::Retrieval,
            greeting_query: "hello welcome good evening hi".into(),
            fallback_queries: vec!["I don't know".into(), "Tell me more".into()],
            invite_query: "hello are you still there anybody".into(),
            goodbye_query: "goodbye farewell see you come back".into(),
            options: 5,
            min_fit: 0.5,
            seed: None,
            variety: 1,
            openai_api_key: String::new(),
            openai_base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o".into(),
            flow: Flow::Single,
            timeout_ms: 15_000,
            max_tokens: 300,
            model_retries: 0,
            max_rounds: 3,
            history_turns: 8,
            prompt_file: None,
            order_wait_ms: 60_000,
            retry_for_s: 120,
            join_within_ms: 2_500,
            statement_wait_ms: 1_000,
            after_speech_ms: 2_500,
            max_hold_ms: 12_000,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_LLM_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[
        ("CINEMA_DIRECTOR", "director"),
        ("CINEMA_SEED", "seed"),
        ("OPENAI_API_KEY", "openai_api_key"),
        ("OPENAI_BASE_URL", "openai_base_url"),
        ("LLM_MODEL", "model"),
    ];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        if [
            self.join_within_ms,
            self.statement_wait_ms,
            self.after_speech_ms,
        ]
        .iter()
        .any(|&ms| ms > self.max_hold_ms)
            || self.max_hold_ms > 20_000
        {
            return Err("join_within_ms, statement_wait_ms and after_speech_ms must be at most max_hold_ms, and max_hold_ms at most 20000 (the events' ack wait is 30 s)".into());
        }
        if self.options == 0 || self.variety == 0 || self.timeout_ms == 0 {
            return Err("options, variety and timeout_ms must be above 0".into());
        }
        if !(0.0..=1.0).contains(&self.min_fit) {
            return Err(format!("min_fit must be from 0 to 1, got {}", self.min_fit));
        }
        match self.director {
            DirectorKind::Retrieval => Ok(()),
            DirectorKind::OpenAi => {
                if self.openai_api_key.trim().is_empty()
                    && self.openai_base_url.contains("api.openai.com")
                {
                    return Err("director `openai` needs OPENAI_API_KEY (or OPENAI_BASE_URL for a local endpoint)".into());
                }
                if let Some(path) = &self.prompt_file {
                    std::fs::metadata(path)
                        .map_err(|e| format!("prompt_file {}: {e}", path.display()))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_is_checked() {
        use plumbing::Settings;
        let ok = Config::default();
        assert!(ok.validate().is_ok());
        let odd_fit = Config {
            min_fit: 1.5,
            ..Config::default()
        };
        assert!(odd_fit.validate().unwrap_err().contains("min_fit"));
        let bad_flow = serde_json::from_value::<Config>(serde_json::json!({"flow": "three-step"}));
        assert!(bad_flow.unwrap_err().to_string().contains("two-step"));
        let bad_director =
            serde_json::from_value::<Config>(serde_json::json!({"director": "telepathy"}));
        assert!(bad_director.unwrap_err().to_string().contains("openai"));
        let typed: Config =
            serde_json::from_value(serde_json::json!({"director": "openai", "flow": "two-step"}))
                .unwrap_or_default();
        assert_eq!(
            (typed.director, typed.flow),
            (DirectorKind::OpenAi, Flow::TwoStep)
        );
        let no_key = Config {
            director: DirectorKind::OpenAi,
            ..Config::default()
        };
        assert!(no_key.validate().unwrap_err().contains("OPENAI_API_KEY"));
        let local = Config {
            director: DirectorKind::OpenAi,
            openai_base_url: "http://127.0.0.1:11434/v1".into(),
            ..Config::default()
        };
        assert!(local.validate().is_ok(), "a local endpoint needs no key");
        let missing_prompt = Config {
            director: DirectorKind::OpenAi,
            openai_api_key: "k".into(),
            prompt_file: Some("/nonexistent/prompt.txt".into()),
            ..Config::default()
        };
        assert!(
            missing_prompt
                .validate()
                .unwrap_err()
                .contains("prompt_file")
        );
    }
}
