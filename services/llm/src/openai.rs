//! The `openai` director: a chat-completions model (OpenAI or any compatible
//! endpoint: Ollama, llama.cpp server, vLLM…) chooses the clip with tools.
//!
//! Two flows, one contract:
//! - `single` (default): the director searches first (answer + description
//!   search on the transcript) and gives the options to the model in one
//!   request; the model answers with one `play_video_by_params` call.
//! - `two-step`: the first generation's flow — the model calls
//!   `search_video_clips(description, limit)`, receives options, then calls
//!   `play_video_by_params(...)` with its reasoning.
//!
//! Whatever the model does wrong (no tool call, a tool call written as JSON
//! in the text, an unknown clip id, a path, missing fields, a refusal, an HTTP
//! error, a timeout) ends in an [`Error`] with a clear message; the caller
//! then answers with the retrieval director, so the visitor always gets a clip.

use std::time::{Duration, Instant};

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::middleware::ReqwestService;
use async_openai::middleware::retry::OpenAIRetryLayer;
use async_openai::types::chat::{
    ChatCompletionMessageToolCall, ChatCompletionMessageToolCalls,
    ChatCompletionRequestAssistantMessage, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessage, ChatCompletionRequestToolMessage,
    ChatCompletionRequestUserMessage, ChatCompletionTool, ChatCompletionToolChoiceOption,
    ChatCompletionTools, CreateChatCompletionRequest, FunctionCall, FunctionObject,
    ToolChoiceOptions,
};
use bus::Bus;
use serde_json::{Value, json};
use wire::v1::{Clip, ConversationState, SearchMode};

use crate::retrieval::search_hits;
use crate::{Config, search_with_limit};

/// The built-in system prompt; `prompt_file` replaces it.
pub const DEFAULT_PROMPT: &str = "\
You are an old television in a gallery, talking with a visitor. You are mute: \
you cannot write or speak a single word of your own. The only way you can \
answer is by playing a short clip from a film, and the clip's spoken line is \
your answer. Choose the clip whose line best answers what the visitor just \
said, as a witty, warm conversation partner would; keep the conversation \
going. Never choose a clip that was already played. Always answer by calling \
a tool, never with text.";

pub use tools::{PLAY_TOOL, SEARCH_TOOL};

/// Why the model's turn did not produce a clip. Every variant is shown to the
/// operator, and the turn falls back to the retrieval director.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the model endpoint failed: {0}")]
    Api(String),
    #[error("the model did not answer within {0} ms")]
    Timeout(u64),
    #[error("the model refused: {0}")]
    Refused(String),
    #[error("the model answered without choosing a clip: {0:?}")]
    NoToolCall(String),
    #[error("the model called an unknown tool {0:?}")]
    UnknownTool(String),
    #[error("the model's arguments are not usable: {0}")]
    BadArguments(String),
    #[error("the model chose clip {0:?}, which was not among the options")]
    UnknownClip(String),
    #[error("the model asked to play a path ({0:?}); only clip ids are played")]
    Path(String),
    #[error("the model kept searching and never chose a clip ({0} requests)")]
    TooManyRounds(u32),
    #[error("no clip in the library is like this line; nothing to ask the model")]
    NoOptions,
    #[error("searching the library failed: {0}")]
    Search(#[from] bus::Error),
}

/// What the model chose, with what the dashboard shows of how.
#[derive(Debug)]
pub struct Choice {
    pub clip: Clip,
    /// Every option the model saw, best first as the library ranked them.
    pub options: Vec<Clip>,
    /// (query, mode, hits) of every search done this turn.
    pub searches: Vec<(String, SearchMode, u32)>,
    pub reasoning: String,
    pub search_ms: u32,
    pub model_ms: u32,
}

/// A tool call as the model made it, read from `tool_calls` or from JSON
/// written in the message text.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

pub struct OpenAi {
    client: Client<OpenAIConfig>,
    model: String,
    prompt: String,
    two_step: bool,
    timeout: Duration,
    max_tokens: u32,
    max_rounds: u32,
    history: usize,
    seed: Option<i64>,
}

impl OpenAi {
    pub fn new(config: &Config) -> Result<OpenAi, String> {
        // reqwest (through async-openai) uses rustls without a built-in
        // crypto provider; the workspace's is ring. Installing twice is fine.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let prompt = match &config.prompt_file {
            Some(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read the prompt file {}: {e}", path.display()))?,
            None => DEFAULT_PROMPT.to_string(),
        };
        let api = OpenAIConfig::new()
            .with_api_base(config.openai_base_url.trim_end_matches('/'))
            .with_api_key(config.openai_api_key.clone());
        // async-openai retries 429s and 5xx by default; a visitor is
        // waiting, so retries are the operator's choice (`model_retries`).
        let transport = ReqwestService::default();
        let client = match config.model_retries {
            0 => Client::with_config(api).with_http_service(transport),
            n => Client::with_config(api).with_http_service(
                tower::ServiceBuilder::new()
                    .layer(OpenAIRetryLayer::new(n as usize))
                    .service(transport),
            ),
        };
        Ok(OpenAi {
            client,
            model: config.model.clone(),
            prompt,
            two_step: config.flow == crate::Flow::TwoStep,
            timeout: Duration::from_millis(config.timeout_ms),
            max_tokens: config.max_tokens,
            max_rounds: config.max_rounds.max(2),
            history: config.history_turns as usize,
            seed: config.seed.map(|s| s as i64),
        })
    }

    /// One turn: `text` is what the visitor said, `state` the session so far.
    pub async fn choose(
        &self,
        bus: &Bus,
        config: &Config,
        text: &str,
        state: &ConversationState,
    ) -> Result<Choice, Error> {
        let mut messages = self.context(state);
        let mut choice = Choice {
            clip: Clip::default(),
            options: Vec::new(),
            searches: Vec::new(),
            reasoning: String::new(),
            search_ms: 0,
            model_ms: 0,
        };
        let played = &state.played_clip_ids;
        if self.two_step {
            messages.push(user(format!("The visitor says: {text}")));
        } else {
            let started = Instant::now();
            // Answers first, each with how well it fits and why; then clips
            // that say something like it.
            let mut shown = Vec::new();
            for mode in [SearchMode::Answer, SearchMode::Description] {
                let hits = search_hits(bus, text, mode, config.options, played).await?;
                choice
                    .searches
                    .push((text.to_string(), mode, hits.len() as u32));
                for hit in hits {
                    let Some(clip) = hit.clip else { continue };
                    if choice.options.iter().any(|c| c.id == clip.id) {
                        continue;
                    }
                    shown.push(if mode == SearchMode::Answer {
                        tools::answer_option(&clip, hit.score, &hit.reason)
                    } else {
                        tools::option(&clip)
                    });
                    choice.options.push(clip);
                }
            }
            choice.search_ms = started.elapsed().as_millis() as u32;
            if choice.options.is_empty() {
                return Err(Error::NoOptions);
            }
            messages.push(user(format!(
                "The visitor says: {text}\n\nClips you can play (JSON; `fit` is how likely \
                 the library judges a line to answer, from 0 to 1, and `why` says why it \
                 matched):\n{}\n\n\
                 Call {PLAY_TOOL} with the clip_id of the one that answers best.",
                tools::options(shown)
            )));
        }
        for _round in 0..self.max_rounds {
            let tools = if self.two_step {
                vec![search_tool(), play_tool()]
            } else {
                vec![play_tool()]
            };
            let started = Instant::now();
            let call = self.complete(&messages, tools).await;
            choice.model_ms += started.elapsed().as_millis() as u32;
            let call = call?;
            match call.name.as_str() {
                PLAY_TOOL => {
                    let (clip, reasoning) = resolve_play(&call.arguments, &choice.options)?;
                    choice.clip = clip;
                    choice.reasoning = reasoning;
                    return Ok(choice);
                }
                SEARCH_TOOL if self.two_step => {
                    let description = call.arguments["description"]
                        .as_str()
                        .filter(|d| !d.trim().is_empty())
                        .ok_or_else(|| {
                            Error::BadArguments(format!(
                                "{SEARCH_TOOL} needs a description, got {}",
                                call.arguments
                            ))
                        })?
                        .to_string();
                    let limit = call.arguments["limit"]
                        .as_u64()
                        .map(|l| l.clamp(1, 20) as u32)
                        .unwrap_or(config.options);
                    let started = Instant::now();
                    let hits = search_with_limit(
                        bus,
                        &description,
                        SearchMode::Description,
                        limit,
                        played,
                    )
                    .await?;
                    choice.search_ms += started.elapsed().as_millis() as u32;
                    choice.searches.push((
                        description.clone(),
                        SearchMode::Description,
                        hits.len() as u32,
                    ));
                    let result = options_json(&hits);
                    for clip in hits {
                        if !choice.options.iter().any(|c| c.id == clip.id) {
                            choice.options.push(clip);
                        }
                    }
                    messages.push(assistant_call(&call));
                    messages.push(
                        ChatCompletionRequestToolMessage {
                            content: result.into(),
                            tool_call_id: call.id.clone(),
                        }
                        .into(),
                    );
                }
                other => return Err(Error::UnknownTool(other.to_string())),
            }
        }
        Err(Error::TooManyRounds(self.max_rounds))
    }

    /// The system prompt and the latest exchanges of the session.
    fn context(&self, state: &ConversationState) -> Vec<ChatCompletionRequestMessage> {
        let mut messages: Vec<ChatCompletionRequestMessage> =
            vec![ChatCompletionRequestSystemMessage::from(self.prompt.as_str()).into()];
        if let Some(greeting) = state.greeting.as_ref().filter(|_| state.greeting_published) {
            messages.push(
                ChatCompletionRequestAssistantMessage::from(format!(
                    "(You greeted the visitor with clip {}.)",
                    greeting.clip_id
                ))
                .into(),
            );
        }
        let skip = state.history.len().saturating_sub(self.history);
        for exchange in state.history.iter().skip(skip) {
            messages.push(user(format!("The visitor says: {}", exchange.user)));
            messages
                .push(ChatCompletionRequestAssistantMessage::from(exchange.reply.as_str()).into());
        }
        messages
    }

    /// One request to the model; the tool call it made (or wrote as text).
    async fn complete(
        &self,
        messages: &[ChatCompletionRequestMessage],
        tools: Vec<ChatCompletionTool>,
    ) -> Result<Call, Error> {
        // `max_tokens` and `seed` are deprecated by OpenAI but are what
        // compatible servers (Ollama, llama.cpp, vLLM) understand.
        #[allow(deprecated)]
        let request = CreateChatCompletionRequest {
            model: self.model.clone(),
            messages: messages.to_vec(),
            tools: Some(
                tools
                    .into_iter()
                    .map(ChatCompletionTools::Function)
                    .collect(),
            ),
            tool_choice: Some(ChatCompletionToolChoiceOption::Mode(
                ToolChoiceOptions::Required,
            )),
            parallel_tool_calls: Some(false),
            max_tokens: Some(self.max_tokens),
            seed: self.seed,
            ..Default::default()
        };
        let response = tokio::time::timeout(self.timeout, self.client.chat().create(request))
            .await
            .map_err(|_| Error::Timeout(self.timeout.as_millis() as u64))?
            .map_err(api_error)?;
        let Some(choice) = response.choices.into_iter().next() else {
            return Err(Error::NoToolCall("(no choices in the response)".into()));
        };
        let message = choice.message;
        if let Some(refusal) = message.refusal.filter(|r| !r.trim().is_empty()) {
            return Err(Error::Refused(refusal));
        }
        let first = message
            .tool_calls
            .unwrap_or_default()
            .into_iter()
            .find_map(|c| match c {
                ChatCompletionMessageToolCalls::Function(f) => Some(f),
                ChatCompletionMessageToolCalls::Custom(_) => None,
            });
        if let Some(ChatCompletionMessageToolCall { id, function }) = first {
            let arguments = parse_arguments(&function.arguments)?;
            return Ok(Call {
                id,
                name: function.name,
                arguments,
            });
        }
        let content = message.content.unwrap_or_default();
        call_in_text(&content).ok_or(Error::NoToolCall(truncate(&content, 200)))
    }
}

fn api_error(e: OpenAIError) -> Error {
    match e {
        OpenAIError::ApiError(api) => Error::Api(format!(
            "HTTP {}: {}",
            api.status_code.as_u16(),
            api.api_error
        )),
        OpenAIError::JSONDeserialize(err, body) => Error::Api(format!(
            "unreadable response ({err}): {}",
            truncate(&body, 200)
        )),
        other => Error::Api(other.to_string()),
    }
}

fn user(text: String) -> ChatCompletionRequestMessage {
    ChatCompletionRequestUserMessage::from(text).into()
}

fn assistant_call(call: &Call) -> ChatCompletionRequestMessage {
    ChatCompletionRequestAssistantMessage {
        tool_calls: Some(vec![ChatCompletionMessageToolCalls::Function(
            ChatCompletionMessageToolCall {
                id: call.id.clone(),
                function: FunctionCall {
                    name: call.name.clone(),
                    arguments: call.arguments.to_string(),
                },
            },
        )]),
        ..Default::default()
    }
    .into()
}

fn search_tool() -> ChatCompletionTool {
    ChatCompletionTool {
        function: FunctionObject {
            name: SEARCH_TOOL.into(),
            description: Some(tools::SEARCH_DESCRIPTION.into()),
            parameters: Some(tools::search_parameters()),
            strict: None,
        },
    }
}

fn play_tool() -> ChatCompletionTool {
    ChatCompletionTool {
        function: FunctionObject {
            name: PLAY_TOOL.into(),
            description: Some(tools::PLAY_DESCRIPTION.into()),
            parameters: Some(tools::play_parameters()),
            strict: None,
        },
    }
}

/// Options as the model sees them: the first generation's fields, by clip id.
pub fn options_json(options: &[Clip]) -> String {
    tools::options(options.iter().map(tools::option)).to_string()
}

/// Tool arguments are a JSON object; models sometimes wrap them in extra text
/// or send an empty string.
fn parse_arguments(raw: &str) -> Result<Value, Error> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    first_json_object(raw)
        .filter(Value::is_object)
        .ok_or_else(|| Error::BadArguments(format!("not a JSON object: {}", truncate(raw, 200))))
}

/// The first JSON object in `text`, ignoring text around it (small models
/// write "Sure! {…}" or fence it in ```json).
pub fn first_json_object(text: &str) -> Option<Value> {
    text.match_indices('{').find_map(|(at, _)| {
        serde_json::Deserializer::from_str(&text[at..])
            .into_iter::<Value>()
            .next()
            .and_then(Result::ok)
    })
}

/// A tool call written as JSON in the message text, in the shapes small
/// models use: `{"name": .., "arguments": {..}}`, `{"name": .., "parameters":
/// {..}}`, `{"tool": .., "args": {..}}`, `{"function": {"name": .., "arguments": ..}}`,
/// or the bare arguments `{"clip_id": ..}`.
pub fn call_in_text(text: &str) -> Option<Call> {
    let v = first_json_object(text)?;
    let v = match v.get("function") {
        Some(f) if f.is_object() => f.clone(),
        _ => v,
    };
    let name = ["name", "tool", "tool_name", "function"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_str))
        .map(str::to_string);
    let args = ["arguments", "parameters", "args", "input"]
        .iter()
        .find_map(|k| v.get(*k))
        .cloned();
    let (name, arguments) = match (name, args) {
        (Some(name), Some(Value::String(s))) => (name, parse_arguments(&s).ok()?),
        (Some(name), Some(args)) => (name, args),
        (None, None) if v.get("clip_id").is_some() => (PLAY_TOOL.to_string(), v),
        (None, None) if v.get("description").is_some() => (SEARCH_TOOL.to_string(), v),
        _ => return None,
    };
    Some(Call {
        id: "call_in_text".into(),
        name,
        arguments,
    })
}

/// The clip a `play_video_by_params` call names, and the model's reasoning.
/// Accepts a clip id, or the first generation's `video_file`/`start`/`end`
/// when they name one of the options; refuses paths and unknown ids.
pub fn resolve_play(args: &Value, options: &[Clip]) -> Result<(Clip, String), Error> {
    let reasoning = args["reasoning"]
        .as_str()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .unwrap_or("(the model gave no reasoning)")
        .to_string();
    let text = |k: &str| args.get(k).and_then(Value::as_str).map(str::trim);
    if let Some(id) = text("clip_id").or(text("id")).filter(|s| !s.is_empty()) {
        if id.contains('/') || id.contains('\\') {
            return Err(Error::Path(id.to_string()));
        }
        return options
            .iter()
            .find(|c| c.id == id)
            .cloned()
            .map(|c| (c, reasoning))
            .ok_or_else(|| Error::UnknownClip(id.to_string()));
    }
    let Some(file) = text("video_file")
        .or(text("file"))
        .filter(|s| !s.is_empty())
    else {
        return Err(Error::BadArguments(format!(
            "{PLAY_TOOL} needs a clip_id, got {args}"
        )));
    };
    if file.contains('/') || file.contains('\\') || file.contains("..") {
        return Err(Error::Path(file.to_string()));
    }
    let number = |keys: [&str; 2]| {
        keys.iter().find_map(|k| match args.get(*k) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        })
    };
    let start = number(["start", "start_time"]);
    let end = number(["end", "end_time"]);
    let stem = file
        .rsplit_once('.')
        .map_or(file, |(s, _)| s)
        .to_lowercase();
    options
        .iter()
        .find(|c| {
            let film = c.film_id.to_lowercase() == stem || c.film_title.to_lowercase() == stem;
            let near = |want: Option<f64>, have: f64| want.is_none_or(|w| (w - have).abs() <= 1.0);
            film && near(start, c.start_s) && near(end, c.end_s)
        })
        .cloned()
        .map(|c| (c, reasoning))
        .ok_or_else(|| Error::UnknownClip(format!("{file} {start:?}-{end:?}")))
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(id: &str, film: &str, start: f64, end: f64) -> Clip {
        Clip {
            id: id.into(),
            film_id: film.into(),
            film_title: film.into(),
            start_s: start,
            end_s: end,
            caption: format!("line {id}"),
            ..Default::default()
        }
    }

    #[test]
    fn reads_tool_calls_written_as_text() {
        let shapes = [
            r#"Sure! {"name": "play_video_by_params", "arguments": {"clip_id": "a1", "reasoning": "r"}}"#,
            r#"```json
{"name": "play_video_by_params", "parameters": {"clip_id": "a1"}}
```"#,
            r#"{"tool": "play_video_by_params", "args": "{\"clip_id\": \"a1\"}"}"#,
            r#"{"function": {"name": "play_video_by_params", "arguments": "{\"clip_id\":\"a1\"}"}}"#,
            r#"I choose {"clip_id": "a1", "reasoning": "fits"} because it fits."#,
        ];
        for text in shapes {
            let call = call_in_text(text).unwrap_or_else(|| panic!("no call in {text}"));
            assert_eq!(call.name, PLAY_TOOL, "{text}");
            assert_eq!(call.arguments["clip_id"], "a1", "{text}");
        }
        let search =
            call_in_text(r#"{"name":"search_video_clips","arguments":{"description":"rain"}}"#)
                .expect("search call");
        assert_eq!(search.name, SEARCH_TOOL);
        assert_eq!(call_in_text("I would rather not."), None);
        assert_eq!(call_in_text("{ broken json"), None);
        assert_eq!(call_in_text(r#"{"weather": "fine"}"#), None);
    }

    #[test]
    fn play_arguments_are_validated_against_the_options() {
        let options = [clip("a1", "Rain", 1.0, 3.0), clip("b2", "Sun", 4.0, 6.0)];
        let (c, why) = resolve_play(&json!({"clip_id": "b2", "reasoning": "warm"}), &options)
            .expect("known id");
        assert_eq!((c.id.as_str(), why.as_str()), ("b2", "warm"));
        let (c, why) = resolve_play(&json!({"clip_id": " a1 "}), &options).expect("id with spaces");
        assert_eq!(c.id, "a1");
        assert!(why.contains("no reasoning"));
        assert!(matches!(
            resolve_play(&json!({"clip_id": "zz"}), &options),
            Err(Error::UnknownClip(_))
        ));
        assert!(matches!(
            resolve_play(&json!({"clip_id": "../../etc/passwd"}), &options),
            Err(Error::Path(_))
        ));
        assert!(matches!(
            resolve_play(
                &json!({"video_file": "/etc/passwd", "start": 0, "end": 1}),
                &options
            ),
            Err(Error::Path(_))
        ));
        assert!(matches!(
            resolve_play(&json!({"reasoning": "no id"}), &options),
            Err(Error::BadArguments(_))
        ));
        // The first generation's file/start/end, when they name an option.
        let (c, _) = resolve_play(
            &json!({"video_file": "Sun.mp4", "start_time": "4.2", "end_time": 6.0}),
            &options,
        )
        .expect("legacy arguments");
        assert_eq!(c.id, "b2");
        assert!(matches!(
            resolve_play(&json!({"video_file": "Sun.mp4", "start": 30.0}), &options),
            Err(Error::UnknownClip(_))
        ));
    }

    #[test]
    fn arguments_with_extra_text_or_nothing_are_read() {
        assert_eq!(parse_arguments("").expect("empty"), json!({}));
        assert_eq!(
            parse_arguments("args: {\"clip_id\": \"x\"} done").expect("wrapped")["clip_id"],
            "x"
        );
        assert!(parse_arguments("[1, 2]").is_err());
        assert!(parse_arguments("clip x").is_err());
    }

    #[test]
    fn options_carry_the_first_generations_fields() {
        let v: Value =
            serde_json::from_str(&options_json(&[clip("a1", "Rain", 1.0, 3.5)])).expect("json");
        let o = &v["options"][0];
        assert_eq!(o["clip_id"], "a1");
        assert_eq!(o["film"], "Rain");
        assert_eq!(o["duration"], 2.5);
        assert_eq!(o["description"], "[VIDEO: Rain | \"line a1\"]");
    }
}
