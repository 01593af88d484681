//! The library as MCP (Model Context Protocol) tools, with the first
//! generation's contract so its prompts keep working:
//!
//! - `search_video_clips(description, limit = 5)`: options with clip_id,
//!   caption, description, film, start, end and duration (the llm director's
//!   option shape, plus the film's id and file);
//! - `play_video_by_params(session_id, clip_id | video_file + start + end,
//!   reasoning)`: a `PlayCommand` on the session's Pi, as the director sends;
//! - `list_films()`.
//!
//! Served over stdio (`clip-selector mcp`) or streamable HTTP at [`HTTP_PATH`]
//! (`clip-selector mcp --http ADDR`). Searching and listing need only the
//! library. Playing needs NATS, reached on the first play: while it cannot be
//! reached, a play is a tool error that names the URL.
//!
//! Every bad argument (a missing field, a wrong type, a path outside the
//! library, an unknown clip or session) is a tool error the model can read
//! and correct, never a panic and never a protocol error.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    JsonObject, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
    ToolAnnotations,
};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::never::NeverSessionManager;
use rmcp::transport::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use wire::v1::{
    Clip, PlayCommand, SearchMode, SearchRequest, SessionRef, SessionReply, SessionState,
};

use crate::{Error, Library};

pub use ::tools::{DEFAULT_LIMIT, FILMS_TOOL, MAX_LIMIT, PLAY_TOOL, SEARCH_TOOL};

/// Where streamable HTTP is served.
pub const HTTP_PATH: &str = "/mcp";

/// How long the first play waits for NATS before it answers with an error.
pub const NATS_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The NATS connection's name (`nats server report connections` shows it).
const CONNECTION_NAME: &str = "clip-selector-mcp";

/// The MCP server: the library's tools. Cheap to clone (one per HTTP request).
#[derive(Clone)]
pub struct Tools {
    lib: Arc<Library>,
    nats: Arc<Nats>,
}

/// The bus, connected on first use; a failed connection is tried again on
/// the next play.
struct Nats {
    url: String,
    bus: OnceCell<bus::Bus>,
}

impl Nats {
    async fn bus(&self) -> Result<&bus::Bus, String> {
        self.bus
            .get_or_try_init(|| async {
                // No retries of the first connection (unlike the services):
                // a caller is waiting for an answer.
                let connect = async {
                    let client = bus::connect_options(CONNECTION_NAME, &self.url)
                        .await?
                        .connection_timeout(NATS_CONNECT_TIMEOUT)
                        .reconnect_delay_callback(|_| bus::RECONNECT_DELAY)
                        .connect(bus::server_addrs(&self.url)?)
                        .await
                        .map_err(|e| bus::Error::nats("connect", e))?;
                    Ok::<_, bus::Error>(bus::Bus::new(client))
                };
                match tokio::time::timeout(NATS_CONNECT_TIMEOUT * 2, connect).await {
                    Ok(Ok(bus)) => {
                        tracing::info!(nats = %plumbing::redact(&self.url), "Connected to NATS.");
                        Ok(bus)
                    }
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("no answer".to_string()),
                }
            })
            .await
            .map_err(|why| {
                format!(
                    "cannot play: NATS at {} cannot be reached ({why}); searching and listing \
                     still work",
                    plumbing::redact(&self.url)
                )
            })
    }
}

impl Tools {
    /// Tools over `lib`; plays go to the NATS server at `nats_url`, reached
    /// on the first play.
    pub fn new(lib: Arc<Library>, nats_url: &str) -> Tools {
        Tools {
            lib,
            nats: Arc::new(Nats {
                url: nats_url.to_string(),
                bus: OnceCell::new(),
            }),
        }
    }

    /// Tools that play through an existing connection.
    pub fn with_bus(lib: Arc<Library>, bus: bus::Bus) -> Tools {
        Tools {
            lib,
            nats: Arc::new(Nats {
                url: String::new(),
                bus: OnceCell::new_with(Some(bus)),
            }),
        }
    }

    fn search(&self, args: &JsonObject) -> Result<Value, String> {
        let description = text(args, "description")?
            .or(text(args, "query")?)
            .ok_or_else(|| {
                format!("{SEARCH_TOOL} needs a description: what the clip should say or show")
            })?;
        if description.len() > 2000 {
            return Err("the description is longer than 2000 bytes".into());
        }
        let limit = limit(args)?;
        let hits = self
            .lib
            .search(&SearchRequest {
                query: description.to_string(),
                mode: SearchMode::Description as i32,
                limit,
                ..Default::default()
            })
            .map_err(|e| format!("the search failed: {e}"))?;
        let options: Vec<Value> = hits.iter().map(|(c, _)| self.option(c)).collect();
        Ok(json!({ "options": options }))
    }

    fn films(&self) -> Value {
        let films: Vec<Value> = self
            .lib
            .films()
            .map(|f| {
                json!({
                    "film_id": f.id,
                    "title": f.title,
                    "video_file": self.video_file(&f.id),
                    "duration": round2(f.duration_s),
                    "clips": f.clip_count,
                    "lines": f.clip_count.saturating_sub(f.scene_count),
                    "scenes": f.scene_count,
                    "subtitles": f.subtitles,
                })
            })
            .collect();
        json!({ "films": films })
    }

    /// A play's arguments read (session, clip, reasoning): everything the
    /// library alone can refuse, refused before NATS.
    fn play_arguments<'a>(
        &'a self,
        args: &'a JsonObject,
    ) -> Result<(&'a str, &'a Clip, &'a str), String> {
        let sid = text(args, "session_id")?.ok_or_else(|| {
            format!("{PLAY_TOOL} needs a session_id: the session whose TV plays the clip")
        })?;
        subjects::check_id("session id", sid).map_err(|e| e.to_string())?;
        let clip = self.resolve(args)?;
        let reasoning = text(args, "reasoning")?.unwrap_or("(no reasoning given)");
        Ok((sid, clip, reasoning))
    }

    /// A tool call's arguments, read as the tool reads them, up to what it
    /// would do next (a search's options, a play's clip; nothing is
    /// played): the fuzzer's entry (`fuzz/`).
    pub fn read_call(&self, tool: &str, args: &JsonObject) -> Result<Value, String> {
        match tool {
            SEARCH_TOOL => self.search(args),
            FILMS_TOOL => Ok(self.films()),
            PLAY_TOOL => self
                .play_arguments(args)
                .map(|(sid, clip, _)| json!({ "session_id": sid, "clip_id": clip.id })),
            other => Err(format!("unknown tool {other:?}")),
        }
    }

    async fn play(&self, args: &JsonObject) -> Result<Value, String> {
        let (sid, clip, reasoning) = self.play_arguments(args)?;

        let bus = self.nats.bus().await?;
        let reply: Result<SessionReply, _> = bus
            .request(
                &endpoints::rooms::GET,
                &SessionRef {
                    session_id: sid.to_string(),
                    reason: String::new(),
                },
            )
            .await;
        let session = match reply {
            Ok(SessionReply {
                session: Some(session),
            }) => session,
            Ok(SessionReply { session: None }) | Err(bus::Error::Remote { code: 404, .. }) => {
                return Err(format!("unknown session {sid:?}"));
            }
            Err(e @ (bus::Error::NoResponders { .. } | bus::Error::Timeout { .. })) => {
                return Err(format!(
                    "cannot find session {sid:?}: room-manager does not answer ({e})"
                ));
            }
            Err(e) => return Err(format!("cannot find session {sid:?}: {e}")),
        };
        if let Ok(SessionState::Ended | SessionState::Failed) =
            SessionState::try_from(session.state)
        {
            let why = if session.end_reason.is_empty() {
                String::new()
            } else {
                format!(": {}", session.end_reason)
            };
            return Err(format!("session {sid:?} is over{why}"));
        }
        subjects::check_id("the session's Pi", &session.pi_id).map_err(|e| e.to_string())?;
        let cmd = PlayCommand {
            session_id: sid.to_string(),
            command_id: format!("mcp-{}", uuid::Uuid::new_v4()),
            clip_id: clip.id.clone(),
            greeting: false,
            at_ms: wire::now_ms(),
        };
        bus.publish_durable(
            subjects::pi_session(&session.pi_id, sid, SessionEvent::Play),
            &cmd,
            &bus::ids::play(&cmd.command_id),
        )
        .await
        .map_err(|e| format!("cannot send the play command: {e}"))?;
        tracing::info!(
            session = %sid,
            pi = %session.pi_id,
            clip = %clip.id,
            command = %cmd.command_id,
            %reasoning,
            "Playing a clip an MCP client chose."
        );
        Ok(json!({
            "played": self.option(clip),
            "session_id": sid,
            "command_id": cmd.command_id,
            "reasoning": reasoning,
        }))
    }

    /// The clip a play names: a clip id, or the first generation's
    /// `video_file` with `start` and `end` (the film's nearest clip).
    fn resolve(&self, args: &JsonObject) -> Result<&Clip, String> {
        if let Some(id) = text(args, "clip_id")?.or(text(args, "id")?) {
            if id.contains(['/', '\\']) {
                return Err(format!(
                    "{id:?} is a path, not a clip id: give a clip_id from {SEARCH_TOOL}"
                ));
            }
            return self.lib.clip(id).ok_or_else(|| {
                format!("unknown clip id {id:?}: clip ids come from {SEARCH_TOOL}")
            });
        }
        let Some(file) = text(args, "video_file")?.or(text(args, "file")?) else {
            return Err(format!(
                "{PLAY_TOOL} needs a clip_id from {SEARCH_TOOL} (or video_file with start and end)"
            ));
        };
        let film_id = self.film_named(file)?;
        let start = seconds(args, ["start", "start_time"])?;
        let end = seconds(args, ["end", "end_time"])?;
        nearest_clip(self.lib.clips(), &film_id, start, end)
    }

    /// The film a legacy `video_file` names: its path relative to the
    /// library (or absolute, inside it), else its file name, stem, title or
    /// id when exactly one film has it.
    fn film_named(&self, file: &str) -> Result<String, String> {
        let wanted = library_relative(self.lib.root(), file)?;
        let films: Vec<(&str, &str, PathBuf)> = self
            .lib
            .films()
            .map(|f| (f.id.as_str(), f.title.as_str(), self.relative_path(&f.id)))
            .collect();
        if let Some((id, _, _)) = films.iter().find(|(_, _, rel)| *rel == wanted) {
            return Ok(id.to_string());
        }
        let name = wanted
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_default();
        let matches: Vec<&(&str, &str, PathBuf)> = films
            .iter()
            .filter(|(id, title, rel)| {
                let file_name = rel.file_name().map(|n| n.to_string_lossy());
                let stem = rel.file_stem().map(|n| n.to_string_lossy());
                file_name.is_some_and(|n| n == name)
                    || stem.is_some_and(|s| s == name)
                    || title.eq_ignore_ascii_case(&name)
                    || *id == name
            })
            .collect();
        match matches.as_slice() {
            [(id, _, _)] => Ok(id.to_string()),
            [] => Err(format!(
                "{file:?} is not a film of the library (see {FILMS_TOOL})"
            )),
            several => Err(format!(
                "{file:?} could be any of {}: give the path relative to the library",
                several
                    .iter()
                    .map(|(_, _, rel)| rel.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }

    fn relative_path(&self, film_id: &str) -> PathBuf {
        self.lib
            .film_path(film_id)
            .map(|p| p.strip_prefix(self.lib.root()).unwrap_or(p).to_path_buf())
            .unwrap_or_default()
    }

    fn video_file(&self, film_id: &str) -> String {
        self.relative_path(film_id).to_string_lossy().to_string()
    }

    /// A clip as an option, in the first generation's shape (the director's
    /// option with the film's id and file, which an outside client may
    /// play by).
    fn option(&self, c: &Clip) -> Value {
        let mut o = ::tools::option(c);
        o.insert("film_id".into(), json!(c.film_id));
        o.insert("video_file".into(), json!(self.video_file(&c.film_id)));
        Value::Object(o)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A string argument, trimmed; absent, null and empty are `None`, another
/// type is an error.
fn text<'a>(args: &'a JsonObject, key: &str) -> Result<Option<&'a str>, String> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim()).filter(|s| !s.is_empty())),
        Some(other) => Err(format!("{key} must be a string, got {}", excerpt(other))),
    }
}

fn excerpt(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(60) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s,
    }
}

/// `limit`: a whole number (or a string of one), clamped to 1..=MAX_LIMIT.
fn limit(args: &JsonObject) -> Result<u32, String> {
    let n = match args.get("limit") {
        None | Some(Value::Null) => return Ok(DEFAULT_LIMIT),
        Some(Value::Number(n)) => n.as_f64(),
        Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
        Some(_) => None,
    };
    match n {
        Some(n) if n.is_finite() => Ok(n.round().clamp(1.0, f64::from(MAX_LIMIT)) as u32),
        _ => Err(format!(
            "limit must be a number of options (1 to {MAX_LIMIT}), got {}",
            args.get("limit").map(excerpt).unwrap_or_default()
        )),
    }
}

/// A time in seconds under the first of `keys` present: a number, or a
/// string of seconds or `[HH:]MM:SS[.mmm]` (a comma works too, as in `.srt`).
fn seconds(args: &JsonObject, keys: [&str; 2]) -> Result<Option<f64>, String> {
    let Some((key, v)) = keys
        .iter()
        .find_map(|k| args.get(*k).filter(|v| !v.is_null()).map(|v| (*k, v)))
    else {
        return Ok(None);
    };
    let s = match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => parse_time(s),
        _ => None,
    };
    match s {
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(s)),
        _ => Err(format!(
            "{key} must be a time in seconds (or HH:MM:SS), got {}",
            excerpt(v)
        )),
    }
}

fn parse_time(s: &str) -> Option<f64> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() > 3 {
        return None;
    }
    parts.iter().try_fold(0.0, |acc, part| {
        let x: f64 = part.trim().replace(',', ".").parse().ok()?;
        Some(acc * 60.0 + x)
    })
}

/// A legacy `video_file` as a path relative to the library root: relative
/// paths as they are, absolute ones only inside the root; `..` may not
/// leave it. Only the text is looked at, never the filesystem.
fn library_relative(root: &Path, file: &str) -> Result<PathBuf, String> {
    let outside = || {
        format!(
            "{file:?} is outside the library; only the library's films can be played \
             (see {FILMS_TOOL})"
        )
    };
    let path = Path::new(file);
    let inside = if path.is_absolute() {
        path.strip_prefix(root).map_err(|_| outside())?
    } else {
        path
    };
    let mut out = PathBuf::new();
    for part in inside.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return Err(outside());
                }
            }
            Component::RootDir | Component::Prefix(_) => return Err(outside()),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("{file:?} names no film"));
    }
    Ok(out)
}

/// The clip of `film_id` overlapping `start`–`end` whose ends are nearest
/// to them. One missing end makes it a moment; both missing is an error.
fn nearest_clip<'a>(
    clips: &'a [Clip],
    film_id: &str,
    start: Option<f64>,
    end: Option<f64>,
) -> Result<&'a Clip, String> {
    let (a, b) = match (start, end) {
        (Some(a), Some(b)) if b < a => {
            return Err(format!("end ({b} s) is before start ({a} s)"));
        }
        (Some(a), Some(b)) => (a, b),
        (Some(t), None) | (None, Some(t)) => (t, t),
        (None, None) => {
            return Err(format!(
                "with video_file, give start and end in seconds (or a clip_id from {SEARCH_TOOL})"
            ));
        }
    };
    let distance = |c: &Clip| (c.start_s - a).abs() + (c.end_s - b).abs();
    clips
        .iter()
        .filter(|c| c.film_id == film_id && c.start_s <= b && c.end_s >= a)
        .min_by(|x, y| distance(x).total_cmp(&distance(y)))
        .ok_or_else(|| {
            let title = clips
                .iter()
                .find(|c| c.film_id == film_id)
                .map_or("the film", |c| c.film_title.as_str());
            format!("{title} has no clip between {a:.2} s and {b:.2} s")
        })
}

fn schema(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(o) => Arc::new(o),
        _ => Arc::default(),
    }
}

/// The three tools. Argument names and shapes are the llm director's (its
/// `search_video_clips` and `play_video_by_params`), plus what an outside
/// client must say: the session, and the first generation's file and times.
pub fn tools() -> Vec<Tool> {
    let search = Tool::new(
        SEARCH_TOOL,
        ::tools::SEARCH_DESCRIPTION,
        schema(::tools::search_parameters()),
    )
    .with_annotations(
        ToolAnnotations::with_title("Search film clips")
            .read_only(true)
            .open_world(false),
    );
    // The director's arguments, plus the session and the first
    // generation's file and times; the reasoning alone is required with the
    // session (a clip id or a file names the clip).
    let mut play = ::tools::play_parameters();
    if let Some(props) = play["properties"].as_object_mut() {
        props.insert(
            "session_id".into(),
            json!({"type": "string", "description": "The session whose television plays the clip."}),
        );
        props.insert(
            "video_file".into(),
            json!({"type": "string", "description": "Instead of clip_id: the film's file, relative to the library."}),
        );
        props.insert(
            "start".into(),
            json!({"type": ["number", "string"], "description": "With video_file: where the clip starts, in seconds."}),
        );
        props.insert(
            "end".into(),
            json!({"type": ["number", "string"], "description": "With video_file: where the clip ends, in seconds."}),
        );
    }
    play["required"] = json!(["session_id", "reasoning"]);
    let play = Tool::new(
        PLAY_TOOL,
        format!(
            "{} Name the session whose television plays it with session_id. The first \
             generation's video_file with start and end is accepted too: it must name a film \
             of the library.",
            ::tools::PLAY_DESCRIPTION
        ),
        schema(play),
    )
    .with_annotations(
        ToolAnnotations::with_title("Play a clip on a TV")
            .read_only(false)
            .destructive(false)
            .idempotent(false)
            .open_world(true),
    );
    let films = Tool::new(
        FILMS_TOOL,
        "List the films of the library: id, title, file, duration and how many clips each has.",
        schema(json!({"type": "object", "properties": {}})),
    )
    .with_annotations(
        ToolAnnotations::with_title("List films")
            .read_only(true)
            .open_world(false),
    );
    vec![search, play, films]
}

impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "clip-selector",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "A film library for a television that talks only in film clips. Search with \
                 search_video_clips, then play one option's clip_id on a session with \
                 play_video_by_params.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let outcome = match request.name.as_ref() {
            SEARCH_TOOL => self.search(&args),
            PLAY_TOOL => self.play(&args).await,
            FILMS_TOOL => Ok(self.films()),
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}"),
                    None,
                ));
            }
        };
        let result = match outcome {
            Ok(value) => CallToolResult::structured(value),
            Err(message) => {
                tracing::info!(tool = %request.name, %message, "Refused a tool call.");
                CallToolResult::error(vec![ContentBlock::text(message)])
            }
        };
        Ok(result.into())
    }
}

/// `clip-selector mcp`: loads the library the configuration names and serves
/// its tools on stdio, or over streamable HTTP on `http`, until `shutdown`.
pub async fn run(
    config: crate::Config,
    http: Option<SocketAddr>,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let lib =
        Arc::new(crate::load_library(&config, config.media_base_url.trim_end_matches('/')).await?);
    let tools = Tools::new(lib, &config.nats_url);
    match http {
        Some(addr) => serve_http(tools, addr, shutdown).await,
        None => serve_stdio(tools, shutdown).await,
    }
}

/// Serves the tools on stdin/stdout until the client leaves or `shutdown`.
pub async fn serve_stdio(tools: Tools, shutdown: CancellationToken) -> Result<(), Error> {
    let mcp_error = |source: Box<dyn std::error::Error + Send + Sync>| Error::Mcp {
        transport: "stdio",
        source,
    };
    let running = tools
        .serve_with_ct(rmcp::transport::stdio_pipes(), shutdown.child_token())
        .await
        .map_err(|e| mcp_error(Box::new(e)))?;
    tracing::info!("Serving MCP on stdio.");
    running
        .waiting()
        .await
        .map_err(|e| mcp_error(Box::new(e)))?;
    Ok(())
}

/// The streamable HTTP endpoint at [`HTTP_PATH`]. Stateless (every request
/// stands alone: the tools keep no state per client), JSON answers. Only
/// `Host` headers naming loopback or `addr` itself are accepted (DNS
/// rebinding).
pub fn router(tools: Tools, addr: SocketAddr, shutdown: CancellationToken) -> axum::Router {
    let mut hosts: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "::1".into()];
    if !addr.ip().is_unspecified() {
        hosts.push(addr.ip().to_string());
    }
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_allowed_hosts(hosts)
        .with_cancellation_token(shutdown.child_token());
    let service = StreamableHttpService::new(
        move || Ok(tools.clone()),
        Arc::new(NeverSessionManager::default()),
        config,
    );
    axum::Router::new().nest_service(HTTP_PATH, service)
}

/// Serves the tools over streamable HTTP on `addr` until `shutdown`.
pub async fn serve_http(
    tools: Tools,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Http { addr, source })?;
    tracing::info!(url = %format!("http://{bound}{HTTP_PATH}"), "Serving MCP over HTTP.");
    axum::serve(listener, router(tools, bound, shutdown.clone()))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(|source| Error::Http {
            addr: bound,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(id: &str, film: &str, a: f64, b: f64) -> Clip {
        Clip {
            id: id.into(),
            film_id: film.into(),
            film_title: "Film".into(),
            start_s: a,
            end_s: b,
            ..Default::default()
        }
    }

    fn args(v: Value) -> JsonObject {
        match v {
            Value::Object(o) => o,
            _ => JsonObject::new(),
        }
    }

    #[test]
    fn legacy_paths_stay_inside_the_library() {
        let root = Path::new("/lib");
        for (file, want) in [
            ("a.mp4", Ok("a.mp4")),
            ("./dir/a.mp4", Ok("dir/a.mp4")),
            ("dir/../a.mp4", Ok("a.mp4")),
            ("/lib/dir/a.mp4", Ok("dir/a.mp4")),
            ("/etc/passwd", Err("outside")),
            ("../lib/a.mp4", Err("outside")),
            ("dir/../../etc/passwd", Err("outside")),
            ("/lib/../etc/passwd", Err("outside")),
            ("/lib", Err("names no film")),
            (".", Err("names no film")),
        ] {
            let got = library_relative(root, file);
            match (want, got) {
                (Ok(w), Ok(g)) => assert_eq!(g, PathBuf::from(w), "{file}"),
                (Err(w), Err(g)) => assert!(g.contains(w), "{file}: {g}"),
                (w, g) => panic!("{file}: wanted {w:?}, got {g:?}"),
            }
        }
    }

    #[test]
    fn times_in_seconds_or_clock_notation() {
        for (s, want) in [
            ("4.2", Some(4.2)),
            (" 12 ", Some(12.0)),
            ("1:02.5", Some(62.5)),
            ("00:01:02,500", Some(62.5)),
            ("1:00:00", Some(3600.0)),
            ("1:2:3:4", None),
            ("soon", None),
            ("", None),
        ] {
            assert_eq!(parse_time(s), want, "{s:?}");
        }
        let a = args(json!({"start": -1}));
        assert!(seconds(&a, ["start", "start_time"]).is_err());
        let a = args(json!({"start_time": "2.5", "end": [1]}));
        assert_eq!(seconds(&a, ["start", "start_time"]), Ok(Some(2.5)));
        assert!(seconds(&a, ["end", "end_time"]).is_err());
    }

    #[test]
    fn limits_are_clamped_and_wrong_types_refused() {
        for (v, want) in [
            (json!({}), Ok(DEFAULT_LIMIT)),
            (json!({"limit": null}), Ok(DEFAULT_LIMIT)),
            (json!({"limit": 3}), Ok(3)),
            (json!({"limit": "7"}), Ok(7)),
            (json!({"limit": 0}), Ok(1)),
            (json!({"limit": -4}), Ok(1)),
            (json!({"limit": 1e300}), Ok(MAX_LIMIT)),
            (json!({"limit": 18446744073709551615u64}), Ok(MAX_LIMIT)),
        ] {
            assert_eq!(limit(&args(v.clone())), want, "{v}");
        }
        assert!(limit(&args(json!({"limit": "many"}))).is_err());
        assert!(limit(&args(json!({"limit": {"n": 1}}))).is_err());
    }

    #[test]
    fn strings_are_trimmed_and_other_types_refused() {
        let a = args(json!({"a": " x ", "b": "  ", "c": 5, "d": null}));
        assert_eq!(text(&a, "a"), Ok(Some("x")));
        assert_eq!(text(&a, "b"), Ok(None));
        assert_eq!(text(&a, "d"), Ok(None));
        assert_eq!(text(&a, "missing"), Ok(None));
        assert!(text(&a, "c").is_err_and(|e| e.contains("must be a string")));
    }

    #[test]
    fn the_nearest_overlapping_clip_of_the_film() {
        let clips = [
            clip("a", "f", 0.0, 2.0),
            clip("b", "f", 2.0, 4.5),
            clip("c", "f", 4.5, 7.0),
            clip("x", "g", 2.0, 4.5),
        ];
        let pick = |s, e| nearest_clip(&clips, "f", s, e).map(|c| c.id.as_str());
        assert_eq!(pick(Some(2.1), Some(4.4)), Ok("b"));
        assert_eq!(pick(Some(1.9), Some(4.6)), Ok("b"));
        assert_eq!(pick(Some(5.0), None), Ok("c"));
        assert_eq!(pick(None, Some(1.0)), Ok("a"));
        assert!(pick(Some(9.0), Some(10.0)).is_err_and(|e| e.contains("no clip")));
        assert!(pick(Some(4.0), Some(3.0)).is_err_and(|e| e.contains("before")));
        assert!(pick(None, None).is_err());
        assert!(nearest_clip(&clips, "h", Some(1.0), Some(2.0)).is_err());
    }

    #[test]
    fn the_tools_keep_the_directors_argument_names() {
        let tools = tools();
        let names: Vec<&str> = tools.iter().map(|t| t.name.as_ref()).collect();
        assert_eq!(names, [SEARCH_TOOL, PLAY_TOOL, FILMS_TOOL]);
        let props = |t: &Tool| {
            let mut keys: Vec<String> = t.input_schema["properties"]
                .as_object()
                .map(|p| p.keys().cloned().collect())
                .unwrap_or_default();
            keys.sort();
            keys
        };
        assert_eq!(props(&tools[0]), ["description", "limit"]);
        assert_eq!(
            props(&tools[1]),
            [
                "clip_id",
                "end",
                "reasoning",
                "session_id",
                "start",
                "video_file"
            ]
        );
        assert!(props(&tools[2]).is_empty());
    }
}
