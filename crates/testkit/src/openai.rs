//! A local double of OpenAI's chat-completions API
//! (`POST /v1/chat/completions`), speaking its wire format, recording every
//! request, and answering from a script — or, when the script is empty, as a
//! small deterministic model that searches for clips and then plays one.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{Value, json};

/// What the double answers to one chat-completions request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// One assistant tool call; `arguments` is the raw string put in
    /// `function.arguments` (may be invalid JSON on purpose).
    ToolCall { name: String, arguments: String },
    /// An assistant message with this text content and no `tool_calls`
    /// (finish_reason "stop").
    Content(String),
    /// An HTTP error: this status with OpenAI's error shape.
    Status(u16, String),
    /// HTTP 200 with this raw body and content-type application/json.
    Malformed(String),
    /// An assistant message with `refusal` set and no content (what OpenAI
    /// models send when they decline).
    Refusal(String),
    /// Never answers (sleeps for an hour) — for client timeouts.
    Hang,
    /// The scripted stand-in model (see the module docs).
    Auto,
}

/// One request the double received.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub auth: String,
    pub body: Value,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    script: VecDeque<Reply>,
    delay: Duration,
    /// Numbers completions and tool calls.
    counter: u64,
}

#[derive(Clone)]
pub struct OpenAiDouble {
    inner: Arc<Mutex<Inner>>,
    url: String,
}

impl OpenAiDouble {
    /// Serves on a free loopback port until the runtime ends.
    pub async fn start() -> OpenAiDouble {
        let inner: Arc<Mutex<Inner>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(inner.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        OpenAiDouble { inner, url }
    }

    /// The base URL to use as `OPENAI_BASE_URL`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Time slept before every reply (the "model time").
    pub fn set_delay(&self, d: Duration) {
        lock(&self.inner).delay = d;
    }

    /// Queues a reply; replies are used in order, and `Reply::Auto` answers
    /// when none is left.
    pub fn push(&self, r: Reply) {
        lock(&self.inner).script.push_back(r);
    }

    /// Every chat-completions request, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.inner).requests.clone()
    }

    /// Forgets the recorded requests and the script.
    pub fn clear(&self) {
        let mut g = lock(&self.inner);
        g.requests.clear();
        g.script.clear();
    }
}

/// Locks, shrugging off poisoning (a panicking test must not wedge the double).
fn lock(inner: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    inner
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const PATH: &str = "/v1/chat/completions";

fn error(status: u16, message: &str) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let kind = match code.as_u16() {
        429 => "rate_limit_error",
        500..=599 => "server_error",
        _ => "invalid_request_error",
    };
    (
        code,
        Json(json!({
            "error": { "message": message, "type": kind, "param": null, "code": null }
        })),
    )
        .into_response()
}

async fn chat_completions(
    State(inner): State<Arc<Mutex<Inner>>>,
    headers: HeaderMap,
    raw: Bytes,
) -> Response {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let parsed = serde_json::from_slice::<Value>(&raw);
    let body = parsed.as_ref().cloned().unwrap_or(Value::Null);
    let (reply, delay, n) = {
        let mut g = lock(&inner);
        g.requests.push(Recorded {
            path: PATH.to_string(),
            auth: auth.clone(),
            body: body.clone(),
        });
        if !auth.starts_with("Bearer ") {
            return error(401, "missing bearer");
        }
        if let Err(e) = &parsed {
            return error(400, &format!("request body is not JSON: {e}"));
        }
        let reply = g.script.pop_front().unwrap_or(Reply::Auto);
        g.counter += 1;
        (reply, g.delay, g.counter)
    };
    tokio::time::sleep(delay).await;
    let reply = match reply {
        Reply::Auto => auto(&body),
        other => other,
    };
    match reply {
        Reply::ToolCall { name, arguments } => {
            let completion_tokens = rough_tokens(&name) + rough_tokens(&arguments);
            let message = json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": format!("call_{n}"),
                    "type": "function",
                    "function": { "name": name, "arguments": arguments },
                }],
                "refusal": null,
            });
            completion(&body, n, message, "tool_calls", completion_tokens)
        }
        Reply::Refusal(text) => {
            let completion_tokens = rough_tokens(&text);
            let message = json!({ "role": "assistant", "content": null, "refusal": text });
            completion(&body, n, message, "stop", completion_tokens)
        }
        Reply::Content(text) => {
            let completion_tokens = rough_tokens(&text);
            let message = json!({ "role": "assistant", "content": text, "refusal": null });
            completion(&body, n, message, "stop", completion_tokens)
        }
        Reply::Status(status, message) => error(status, &message),
        Reply::Malformed(raw) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            raw,
        )
            .into_response(),
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            error(504, "the double hung for an hour")
        }
        // `auto` never answers Auto.
        Reply::Auto => error(500, "the stand-in model answered Auto"),
    }
}

fn completion(
    request: &Value,
    n: u64,
    message: Value,
    finish_reason: &str,
    completion_tokens: u64,
) -> Response {
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let prompt_tokens = rough_tokens(&request["messages"].to_string());
    Json(json!({
        "id": format!("chatcmpl-{n}"),
        "object": "chat.completion",
        "created": created,
        "model": request["model"].as_str().unwrap_or_default(),
        "choices": [{
            "index": 0,
            "message": message,
            "finish_reason": finish_reason,
            "logprobs": null,
        }],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "system_fingerprint": null,
    }))
    .into_response()
}

/// About four characters a token, at least one.
fn rough_tokens(s: &str) -> u64 {
    (s.chars().count() as u64).div_ceil(4).max(1)
}

/// The stand-in model: search for clips after a user turn, then play the
/// first clip id it can see, else answer "ok".
fn auto(request: &Value) -> Reply {
    let offered = |name: &str| {
        request["tools"].as_array().is_some_and(|tools| {
            tools
                .iter()
                .any(|t| t["function"]["name"].as_str() == Some(name))
        })
    };
    let messages: &[Value] = request["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let role = |m: &Value| m["role"].as_str().unwrap_or_default().to_string();
    let last_user = messages.iter().rposition(|m| role(m) == "user");
    let after_user = last_user.map_or(messages, |i| &messages[i + 1..]);
    let tool_after_user = after_user.iter().any(|m| role(m) == "tool");

    if offered("search_video_clips") && !tool_after_user {
        let description = last_user
            .map(|i| message_text(&messages[i]))
            .unwrap_or_default();
        return Reply::ToolCall {
            name: "search_video_clips".into(),
            arguments: json!({ "description": description, "limit": 5 }).to_string(),
        };
    }
    if offered("play_video_by_params") {
        let clip = messages
            .iter()
            .rev()
            .filter(|m| matches!(role(m).as_str(), "tool" | "user"))
            .find_map(|m| find_clip_id(&message_text(m)));
        return match clip {
            Some(clip_id) => Reply::ToolCall {
                name: "play_video_by_params".into(),
                arguments: json!({
                    "clip_id": clip_id,
                    "reasoning": "the first option answers best",
                })
                .to_string(),
            },
            None => Reply::Content("I cannot find a clip to play.".into()),
        };
    }
    Reply::Content("ok".into())
}

/// A message's text: a string content, or the text parts of an array
/// content joined by newlines.
fn message_text(message: &Value) -> String {
    match &message["content"] {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter(|p| p["type"].as_str() == Some("text"))
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// The first `"clip_id" : "<id>"` in `text`, giving `<id>`.
fn find_clip_id(text: &str) -> Option<String> {
    const KEY: &str = "\"clip_id\"";
    let mut from = 0;
    while let Some(at) = text[from..].find(KEY) {
        from += at + KEY.len();
        let rest = text[from..].trim_start();
        let Some(rest) = rest.strip_prefix(':') else {
            continue;
        };
        let Some(rest) = rest.trim_start().strip_prefix('"') else {
            continue;
        };
        // The string runs to the first unescaped quote.
        let mut escaped = false;
        let end = rest.char_indices().find_map(|(i, c)| match c {
            _ if escaped => {
                escaped = false;
                None
            }
            '\\' => {
                escaped = true;
                None
            }
            '"' => Some(i),
            _ => None,
        });
        if let Some(end) = end {
            let quoted = &rest[..end];
            return Some(
                serde_json::from_str::<String>(&format!("\"{quoted}\""))
                    .unwrap_or_else(|_| quoted.to_string()),
            );
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const KEY: &str = "Bearer sk-test";

    fn tools() -> Value {
        json!([
            {"type": "function", "function": {"name": "search_video_clips", "parameters": {}}},
            {"type": "function", "function": {"name": "play_video_by_params", "parameters": {}}},
        ])
    }

    async fn post(d: &OpenAiDouble, auth: Option<&str>, body: &Value) -> reqwest::Response {
        let mut req = reqwest::Client::new()
            .post(format!("{}/chat/completions", d.url()))
            .json(body);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.unwrap()
    }

    fn tool_call(v: &Value) -> (String, Value) {
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["type"], "function");
        let args = call["function"]["arguments"].as_str().unwrap();
        (
            call["function"]["name"].as_str().unwrap().to_string(),
            serde_json::from_str(args).unwrap(),
        )
    }

    #[tokio::test]
    async fn auto_searches_then_plays() {
        let d = OpenAiDouble::start().await;
        let mut messages = vec![
            json!({"role": "system", "content": "You pick film clips."}),
            json!({"role": "user", "content": [{"type": "text", "text": "a man says hello"}]}),
        ];
        let r = post(
            &d,
            Some(KEY),
            &json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
        )
        .await;
        assert_eq!(r.status(), 200);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "gpt-4o-mini");
        assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert!(v["choices"][0]["message"]["content"].is_null());
        let u = &v["usage"];
        assert_eq!(
            u["total_tokens"].as_u64().unwrap(),
            u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
        );
        let (name, args) = tool_call(&v);
        assert_eq!(name, "search_video_clips");
        assert_eq!(args, json!({"description": "a man says hello", "limit": 5}));

        let call_id = v["choices"][0]["message"]["tool_calls"][0]["id"].clone();
        messages.push(v["choices"][0]["message"].clone());
        messages.push(json!({
            "role": "tool",
            "tool_call_id": call_id,
            "content": "{\"clips\": [{\"clip_id\" : \"film-a#12\", \"text\": \"hello\"}, {\"clip_id\": \"film-b#3\"}]}",
        }));
        let r = post(
            &d,
            Some(KEY),
            &json!({"model": "gpt-4o-mini", "messages": messages, "tools": tools()}),
        )
        .await;
        let v: Value = r.json().await.unwrap();
        let (name, args) = tool_call(&v);
        assert_eq!(name, "play_video_by_params");
        assert_eq!(
            args,
            json!({"clip_id": "film-a#12", "reasoning": "the first option answers best"})
        );

        // Nothing to play, and no tools at all.
        let r = post(
            &d,
            Some(KEY),
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                    "tools": [tools()[1].clone()]}),
        )
        .await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v["choices"][0]["message"]["content"],
            "I cannot find a clip to play."
        );
        let r = post(
            &d,
            Some(KEY),
            &json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "ok");
        assert_eq!(d.requests().len(), 4);
    }

    #[tokio::test]
    async fn script_tool_call_and_content() {
        let d = OpenAiDouble::start().await;
        d.push(Reply::ToolCall {
            name: "play_video_by_params".into(),
            arguments: "{not json".into(),
        });
        d.push(Reply::Content("hello there".into()));
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
                          "tools": tools()});
        let v: Value = post(&d, Some(KEY), &body).await.json().await.unwrap();
        let call = &v["choices"][0]["message"]["tool_calls"][0];
        assert_eq!(call["function"]["name"], "play_video_by_params");
        assert_eq!(call["function"]["arguments"], "{not json");
        assert!(call["id"].as_str().unwrap().starts_with("call_"));

        let v: Value = post(&d, Some(KEY), &body).await.json().await.unwrap();
        let msg = &v["choices"][0]["message"];
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(msg["role"], "assistant");
        assert_eq!(msg["content"], "hello there");
        assert!(msg.get("tool_calls").is_none());

        // The script is spent: Auto answers.
        let v: Value = post(&d, Some(KEY), &body).await.json().await.unwrap();
        assert_eq!(tool_call(&v).0, "search_video_clips");
    }

    #[tokio::test]
    async fn status_has_openai_error_shape() {
        let d = OpenAiDouble::start().await;
        d.push(Reply::Status(429, "slow down".into()));
        d.push(Reply::Status(503, "overloaded".into()));
        let body = json!({"model": "m", "messages": []});
        let r = post(&d, Some(KEY), &body).await;
        assert_eq!(r.status(), 429);
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            v,
            json!({"error": {"message": "slow down", "type": "rate_limit_error",
                             "param": null, "code": null}})
        );
        let r = post(&d, Some(KEY), &body).await;
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "server_error");
    }

    #[tokio::test]
    async fn malformed_body() {
        let d = OpenAiDouble::start().await;
        d.push(Reply::Malformed("this is not json".into()));
        let r = post(&d, Some(KEY), &json!({"model": "m", "messages": []})).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        assert_eq!(r.text().await.unwrap(), "this is not json");
    }

    #[tokio::test]
    async fn missing_bearer_and_bad_json() {
        let d = OpenAiDouble::start().await;
        d.push(Reply::Content("kept".into()));
        let r = post(&d, None, &json!({"model": "m", "messages": []})).await;
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["message"], "missing bearer");
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let r = reqwest::Client::new()
            .post(format!("{}/chat/completions", d.url()))
            .header("authorization", KEY)
            .body("{oops")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let reqs = d.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].auth, "");
        assert!(reqs[1].body.is_null());

        // Neither failure used up the script.
        let v: Value = post(&d, Some(KEY), &json!({"model": "m", "messages": []}))
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "kept");
    }

    #[tokio::test]
    async fn records_requests_and_clears() {
        let d = OpenAiDouble::start().await;
        assert!(d.url().starts_with("http://127.0.0.1:"));
        assert!(d.url().ends_with("/v1"));
        let body = json!({"model": "gpt-x", "messages": [{"role": "user", "content": "q"}]});
        post(&d, Some(KEY), &body).await;
        let reqs = d.requests();
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].path, "/v1/chat/completions");
        assert_eq!(reqs[0].auth, KEY);
        assert_eq!(reqs[0].body, body);

        d.push(Reply::Content("never".into()));
        d.clear();
        assert!(d.requests().is_empty());
        let v: Value = post(&d, Some(KEY), &body).await.json().await.unwrap();
        assert_eq!(v["choices"][0]["message"]["content"], "ok");
    }

    #[tokio::test]
    async fn delay_is_honoured() {
        let d = OpenAiDouble::start().await;
        let delay = Duration::from_millis(300);
        d.set_delay(delay);
        let started = Instant::now();
        let r = post(&d, Some(KEY), &json!({"model": "m", "messages": []})).await;
        assert_eq!(r.status(), 200);
        assert!(started.elapsed() >= delay, "answered before the delay");
    }

    #[tokio::test]
    async fn hang_times_out_the_client() {
        let d = OpenAiDouble::start().await;
        d.push(Reply::Hang);
        let r = reqwest::Client::new()
            .post(format!("{}/chat/completions", d.url()))
            .header("authorization", KEY)
            .json(&json!({"model": "m", "messages": []}))
            .timeout(Duration::from_millis(200))
            .send()
            .await;
        assert!(r.unwrap_err().is_timeout());
    }

    #[test]
    fn clip_id_scan() {
        assert_eq!(
            find_clip_id(r#"x "clip_id" "no colon" then "clip_id":"a\"b" "#),
            Some("a\"b".into())
        );
        assert_eq!(find_clip_id(r#"{"clip_id" :	 "c-1"}"#), Some("c-1".into()));
        assert_eq!(find_clip_id(r#"{"clip_id": 7}"#), None);
        assert_eq!(find_clip_id("nothing"), None);
    }
}
