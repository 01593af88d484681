//! llm: the director. Greets once when a session's Pi joins and answers every
//! final, non-empty transcript with one clip. The `retrieval` director
//! (default, offline) answers with the line that followed the most similar
//! line in a film, falling back to description search and generic replies.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bus::async_nats::jetstream::AckKind;
use bus::async_nats::jetstream::Message;
use bus::async_nats::jetstream::kv::Store;
use bus::async_nats::jetstream::stream::{RawMessageErrorKind, Stream};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get, names};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::conversation_event::Kind;
use wire::v1::{
    ClientJoined, Clip, ClipPlayed, ConversationEvent, ConversationState, DirectorError, Exchange,
    OptionsConsidered, PlayCommand, Reasoning, SearchDone, SearchMode, SearchReply, SearchRequest,
    SessionRef, SessionReply, Transcript, TurnLatency, UserLine,
};

pub mod openai;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
    /// `retrieval` (offline, default) or `openai`.
    pub director: String,
    /// What the greeting search looks for.
    pub greeting_query: String,
    /// Generic replies searched when nothing else matches.
    pub fallback_queries: Vec<String>,
    /// Options searched per query (and shown to a model).
    pub options: u32,
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
    pub flow: String,
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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            director: "retrieval".into(),
            greeting_query: "hello welcome good evening hi".into(),
            fallback_queries: vec!["I don't know".into(), "Tell me more".into()],
            options: 5,
            seed: None,
            variety: 1,
            openai_api_key: String::new(),
            openai_base_url: "https://api.openai.com/v1".into(),
            model: "gpt-4o".into(),
            flow: "single".into(),
            timeout_ms: 15_000,
            max_tokens: 300,
            model_retries: 0,
            max_rounds: 3,
            history_turns: 8,
            prompt_file: None,
            order_wait_ms: 60_000,
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
        if !matches!(self.flow.as_str(), "single" | "two-step") {
            return Err(format!(
                "flow (CINEMA_LLM_FLOW) must be `single` or `two-step`, got {:?}",
                self.flow
            ));
        }
        if self.options == 0 || self.variety == 0 || self.timeout_ms == 0 {
            return Err("options, variety and timeout_ms must be above 0".into());
        }
        match self.director.as_str() {
            "retrieval" => Ok(()),
            "openai" => {
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
            other => Err(format!(
                "director must be `retrieval` or `openai`, got {other:?}"
            )),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    #[error("{0}")]
    Config(String),
}

struct Director {
    bus: Bus,
    state: Store,
    config: Config,
    openai: Option<openai::OpenAi>,
    events: Stream,
}

/// One event of a session, waiting for its turn.
struct Job {
    msg: Message,
    queued_ms: u32,
}

/// The session tasks of this replica: one per active session, each handling
/// its session's events one at a time, in order.
type Sessions = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>;

/// How long a session task waits for more events before it goes.
const SESSION_IDLE: Duration = Duration::from_secs(30);

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let openai = match config.director.as_str() {
        "openai" => Some(openai::OpenAi::new(&config).map_err(Error::Config)?),
        _ => None,
    };
    let director = Arc::new(Director {
        state: bus.kv(names::CONVERSATIONS_BUCKET).await?,
        bus: bus.clone(),
        config,
        openai,
        events: bus
            .jetstream()
            .get_stream(names::EVENTS_STREAM)
            .await
            .map_err(|e| bus::Error::nats("events stream", e))?,
    });
    let service = bus::service::start(
        bus.client(),
        names::service::LLM,
        "The conversation director",
    )
    .await?;
    let consumer = bus
        .durable_consumer(
            names::EVENTS_STREAM,
            names::LLM_CONSUMER,
            vec![
                SessionEvent::Joined.wildcard(),
                SessionEvent::Transcript.wildcard(),
                SessionEvent::Ended.wildcard(),
            ],
            Duration::from_secs(30),
            5,
        )
        .await?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| bus::Error::nats("consume", e))?;
    tracing::info!(
        director = %director.config.director,
        flow = %director.config.flow,
        "The director is ready."
    );
    let sessions: Sessions = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(msg) = bus::next_or_shutdown(&mut messages, &shutdown, "session events").await {
        let queued_ms = msg
            .info()
            .map(|i| (time_now_ns() - i.published.unix_timestamp_nanos()).max(0) / 1_000_000)
            .unwrap_or(0) as u32;
        let Some((sid, _)) = subjects::parse_session(&msg.subject) else {
            let _ = msg.ack().await;
            continue;
        };
        let sid = sid.to_string();
        let job = Job { msg, queued_ms };
        let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
        let job = match map.get(&sid) {
            Some(tx) => match tx.send(job) {
                Ok(()) => continue,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(job);
        map.insert(sid.clone(), tx);
        tasks.spawn(session_task(
            director.clone(),
            sid,
            rx,
            sessions.clone(),
            shutdown.clone(),
        ));
        while tasks.try_join_next().is_some() {}
    }
    // Let the turns in progress finish; queued events go back to the stream.
    sessions.lock().unwrap_or_else(|p| p.into_inner()).clear();
    while tasks.join_next().await.is_some() {}
    let _ = service.stop().await;
    Ok(())
}

/// Handles one session's events, one at a time, in stream order — also
/// across replicas (see [`Director::wait_for_turn`]).
async fn session_task(
    director: Arc<Director>,
    sid: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    sessions: Sessions,
    shutdown: CancellationToken,
) {
    loop {
        let job = match tokio::time::timeout(SESSION_IDLE, rx.recv()).await {
            Ok(Some(job)) => job,
            Ok(None) => break,
            Err(_) => {
                let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
                if rx.is_empty() {
                    map.remove(&sid);
                    break;
                }
                continue;
            }
        };
        if shutdown.is_cancelled() {
            // Back to the stream for another replica (or this one, restarted).
            let _ = job.msg.ack_with(AckKind::Nak(None)).await;
            continue;
        }
        let ended = matches!(
            subjects::parse_session(&job.msg.subject),
            Some((_, SessionEvent::Ended))
        );
        let seq = job.msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        if !ended && !director.wait_for_turn(&sid, seq, &job.msg, &shutdown).await {
            let _ = job.msg.ack_with(AckKind::Nak(None)).await;
            continue;
        }
        director.handle_alive(&sid, &job).await;
        if !ended
            && let Err(e) = director
                .save(&sid, |s| s.last_seq = s.last_seq.max(seq))
                .await
        {
            tracing::warn!(session = %sid, error = %e, "Cannot record the event as handled.");
        }
        if let Err(e) = job.msg.ack().await {
            tracing::warn!(error = %e, "Cannot ack an event.");
        }
        if ended {
            sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&sid);
            // Whatever came after the end is of no use.
            rx.close();
            while let Some(late) = rx.recv().await {
                let _ = late.msg.ack().await;
            }
            break;
        }
    }
}

fn time_now_ns() -> i128 {
    i128::from(now_ms()) * 1_000_000
}

/// What the retrieval director chose for one line, and how.
#[derive(Debug, Clone)]
pub struct Decision {
    /// Best first; empty when the library has nothing at all.
    pub options: Vec<Clip>,
    pub mode: SearchMode,
    pub query: String,
    pub reasoning: &'static str,
    pub search_ms: u32,
}

async fn search(
    bus: &Bus,
    config: &Config,
    query: &str,
    mode: SearchMode,
    exclude: &[String],
) -> Result<Vec<Clip>, bus::Error> {
    search_with_limit(bus, query, mode, config.options, exclude).await
}

/// `cinema.clips.search`: the library's best clips for `query`, none of `exclude`.
pub async fn search_with_limit(
    bus: &Bus,
    query: &str,
    mode: SearchMode,
    limit: u32,
    exclude: &[String],
) -> Result<Vec<Clip>, bus::Error> {
    let reply: SearchReply = bus
        .request(
            subjects::clips::SEARCH.to_string(),
            &SearchRequest {
                query: query.to_string(),
                mode: mode as i32,
                limit,
                exclude_ids: exclude.to_vec(),
                ..Default::default()
            },
        )
        .await?;
    Ok(reply.hits.into_iter().filter_map(|h| h.clip).collect())
}

/// Which of the first `n` options to play: fixed by the seed, the turn and
/// the line, so replaying a conversation with the same seed (in any session)
/// makes the same choices.
pub fn pick(seed: Option<u64>, turn: u32, text: &str, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let digest = Sha256::new()
        .chain_update(seed.unwrap_or(0).to_le_bytes())
        .chain_update(turn.to_le_bytes())
        .chain_update(text.trim().to_lowercase().as_bytes())
        .finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_le_bytes(first) % n as u64) as usize
}

/// The retrieval director's choice for `text`: the clip whose cue (the line
/// before it in its film) is most like `text`; else a clip that says
/// something similar; else a generic reply; never a clip in `played` unless
/// nothing else is left. Deterministic for a given library.
pub async fn decide(
    bus: &Bus,
    config: &Config,
    text: &str,
    played: &[String],
) -> Result<Decision, bus::Error> {
    let started = Instant::now();
    let mut reasoning = "answered with the line that followed the most similar line in a film";
    let mut mode = SearchMode::Answer;
    let mut query = text.to_string();
    let mut options = search(bus, config, &query, mode, played).await?;
    if options.is_empty() {
        mode = SearchMode::Description;
        reasoning = "no film line was like it; chose a clip that says something similar";
        options = search(bus, config, &query, mode, played).await?;
    }
    for generic in &config.fallback_queries {
        if !options.is_empty() {
            break;
        }
        reasoning = "nothing matched; chose a generic reply";
        query = generic.clone();
        options = search(bus, config, &query, mode, played).await?;
    }
    if options.is_empty() {
        // The library is exhausted for this session: repeats are allowed now.
        reasoning = "every matching clip was already played; repeating one";
        options = search(bus, config, text, SearchMode::Answer, &[]).await?;
        if options.is_empty() {
            options = search(
                bus,
                config,
                &config.fallback_queries.join(" "),
                SearchMode::Description,
                &[],
            )
            .await?;
        }
    }
    Ok(Decision {
        options,
        mode,
        query,
        reasoning,
        search_ms: started.elapsed().as_millis() as u32,
    })
}

/// What one turn chose, and how, whichever director chose it.
struct Choice {
    clip: Option<Clip>,
    options: Vec<Clip>,
    searches: Vec<(String, SearchMode, u32)>,
    reasoning: String,
    search_ms: u32,
    model_ms: u32,
}

/// Exchanges kept in a session's state for a model's context.
const HISTORY_KEPT: usize = 20;

/// How the first generation showed a played clip.
pub use tools::display;

impl Director {
    /// The stream sequence of the earliest event of `sid` this director
    /// handles (joined, transcript) after `after`, if any.
    async fn next_pending(&self, sid: &str, after: u64) -> Result<Option<u64>, bus::Error> {
        let mut first: Option<u64> = None;
        for event in [SessionEvent::Joined, SessionEvent::Transcript] {
            match self
                .events
                .get_first_raw_message_by_subject(subjects::session(sid, event), after + 1)
                .await
            {
                Ok(m) => first = Some(first.map_or(m.sequence, |f| f.min(m.sequence))),
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(bus::Error::nats("events stream", e)),
            }
        }
        Ok(first)
    }

    /// Waits until every earlier event of the session is handled (by any
    /// replica), keeping this one from being redelivered meanwhile. `false`
    /// on shutdown. After `order_wait_ms` it goes ahead anyway, so an event
    /// lost elsewhere cannot stall a session for good.
    async fn wait_for_turn(
        &self,
        sid: &str,
        seq: u64,
        msg: &Message,
        shutdown: &CancellationToken,
    ) -> bool {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            let ready = match self.load(sid).await {
                Ok((st, _)) if st.last_seq >= seq => true,
                Ok((st, _)) => match self.next_pending(sid, st.last_seq).await {
                    Ok(Some(first)) => first >= seq,
                    Ok(None) => true,
                    Err(e) => {
                        tracing::warn!(session = %sid, error = %e, "Cannot read the session's events.");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(session = %sid, error = %e, "Cannot read the session's state.");
                    false
                }
            };
            if ready {
                return true;
            }
            if started.elapsed() > Duration::from_millis(self.config.order_wait_ms) {
                tracing::warn!(session = %sid, seq, "An earlier event was never handled; going ahead.");
                return true;
            }
            if last_progress.elapsed() > Duration::from_secs(5) {
                let _ = msg.ack_with(AckKind::Progress).await;
                last_progress = Instant::now();
            }
            tokio::select! {
                () = shutdown.cancelled() => return false,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    }

    /// Handles one event, telling the stream it is still being worked on
    /// while a slow model thinks (so it is not redelivered elsewhere).
    async fn handle_alive(&self, sid: &str, job: &Job) {
        let work = self.handle(sid, job);
        tokio::pin!(work);
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        tick.tick().await;
        loop {
            tokio::select! {
                () = &mut work => return,
                _ = tick.tick() => { let _ = job.msg.ack_with(AckKind::Progress).await; }
            }
        }
    }

    async fn handle(&self, sid: &str, job: &Job) {
        let msg = &job.msg;
        match subjects::parse_session_from(&msg.subject) {
            Some((pi, _, SessionEvent::Joined)) => match bus::decode_message::<ClientJoined>(msg) {
                Ok(_) => self.greet(sid, pi.unwrap_or_default()).await,
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed join event.")
                }
            },
            Some((_, _, SessionEvent::Transcript)) => {
                match bus::decode_message::<Transcript>(msg) {
                    Ok(t) => self.turn(sid, t, job.queued_ms).await,
                    Err(e) => {
                        tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed transcript.")
                    }
                }
            }
            Some((_, _, SessionEvent::Ended)) => {
                // The session is over: its director state goes (no leaked keys).
                match self.state.purge(sid).await {
                    Ok(()) => {
                        tracing::info!(session = %sid, "The session ended; forgot its state.")
                    }
                    Err(e) => {
                        tracing::warn!(session = %sid, error = %e, "Cannot forget an ended session.")
                    }
                }
            }
            _ => {}
        }
    }

    async fn load(&self, sid: &str) -> Result<(ConversationState, u64), bus::Error> {
        Ok(kv_get::<ConversationState>(&self.state, sid)
            .await?
            .unwrap_or_else(|| {
                (
                    ConversationState {
                        session_id: sid.to_string(),
                        ..Default::default()
                    },
                    0,
                )
            }))
    }

    /// Applies `change` to the session's state with compare-and-set.
    async fn save(
        &self,
        sid: &str,
        change: impl Fn(&mut ConversationState),
    ) -> Result<ConversationState, bus::Error> {
        loop {
            let (mut st, rev) = self.load(sid).await?;
            change(&mut st);
            if kv_cas(&self.state, sid, &st, rev).await?.is_some() {
                return Ok(st);
            }
        }
    }

    async fn search(
        &self,
        query: &str,
        mode: SearchMode,
        exclude: &[String],
    ) -> Result<Vec<Clip>, bus::Error> {
        search(&self.bus, &self.config, query, mode, exclude).await
    }

    async fn event(&self, sid: &str, turn: u32, kind: Kind) {
        let ev = ConversationEvent {
            session_id: sid.to_string(),
            turn,
            at_ms: now_ms(),
            kind: Some(kind),
        };
        if let Err(e) = self
            .bus
            .publish(subjects::session(sid, SessionEvent::Conversation), &ev)
            .await
        {
            tracing::warn!(session = %sid, error = %e, "Cannot publish a conversation event.");
        }
    }

    /// Publishes a conversation event durably (it is part of the record).
    async fn record(&self, sid: &str, turn: u32, kind: Kind, id: &str) -> Result<(), bus::Error> {
        let ev = ConversationEvent {
            session_id: sid.to_string(),
            turn,
            at_ms: now_ms(),
            kind: Some(kind),
        };
        self.bus
            .publish_durable(subjects::session(sid, SessionEvent::Conversation), &ev, id)
            .await
    }

    /// Publishes a play command to the session's Pi.
    async fn publish_play(&self, cmd: &PlayCommand) -> Result<(), bus::Error> {
        let pi = self.pi_of(&cmd.session_id).await?;
        self.bus
            .publish_durable(
                subjects::pi_session(&pi, &cmd.session_id, SessionEvent::Play),
                cmd,
                &bus::ids::play(&cmd.command_id),
            )
            .await
    }

    /// The Pi a session plays on: kept in the state from its join, else asked
    /// of room-manager (a typed line before the Pi joined) and kept.
    async fn pi_of(&self, sid: &str) -> Result<String, bus::Error> {
        let (st, _) = self.load(sid).await?;
        if !st.pi_id.is_empty() {
            return Ok(st.pi_id);
        }
        let reply: SessionReply = self
            .bus
            .request(
                subjects::rooms::GET.into(),
                &SessionRef {
                    session_id: sid.into(),
                    reason: String::new(),
                },
            )
            .await?;
        let pi = reply.session.map(|s| s.pi_id).unwrap_or_default();
        subjects::check_id("the session's Pi", &pi)?;
        self.save(sid, |s| s.pi_id = pi.clone()).await?;
        Ok(pi)
    }

    /// Greets exactly once per session: the greeting is stored before it is
    /// published, and a join after it was published (a reconnect, a
    /// redelivery) plays nothing.
    async fn greet(&self, sid: &str, pi: &str) {
        if let Err(e) = self.try_greet(sid, pi).await {
            tracing::warn!(session = %sid, error = %e, "Greeting failed.");
            self.event(
                sid,
                0,
                Kind::Error(DirectorError {
                    message: format!("greeting failed: {e}"),
                }),
            )
            .await;
        }
    }

    async fn try_greet(&self, sid: &str, pi: &str) -> Result<(), bus::Error> {
        let (mut st, _) = self.load(sid).await?;
        if !pi.is_empty() && st.pi_id != pi {
            st = self.save(sid, |s| s.pi_id = pi.to_string()).await?;
        }
        if st.greeting_published {
            tracing::info!(session = %sid, "Already greeted; not again.");
            return Ok(());
        }
        let (cmd, clip) = match &st.greeting {
            Some(cmd) => (cmd.clone(), None),
            None => {
                let mut options = self
                    .search(
                        &self.config.greeting_query,
                        SearchMode::Description,
                        &st.played_clip_ids,
                    )
                    .await?;
                if options.is_empty() {
                    options = self
                        .search(
                            &self.config.greeting_query,
                            SearchMode::Answer,
                            &st.played_clip_ids,
                        )
                        .await?;
                }
                let Some(clip) = options.into_iter().next() else {
                    self.event(
                        sid,
                        0,
                        Kind::Error(DirectorError {
                            message: "the library has no greeting clip".into(),
                        }),
                    )
                    .await;
                    return Ok(());
                };
                let cmd = PlayCommand {
                    session_id: sid.to_string(),
                    command_id: bus::ids::greeting_command(sid),
                    clip_id: clip.id.clone(),
                    greeting: true,
                    at_ms: now_ms(),
                };
                let stored = cmd.clone();
                let clip_id = clip.id.clone();
                let st = self
                    .save(sid, |s| {
                        if s.greeting.is_none() {
                            s.greeting = Some(stored.clone());
                            s.played_clip_ids.push(clip_id.clone());
                        }
                    })
                    .await?;
                // Another replica may have stored its greeting first: use that one.
                let cmd = st.greeting.unwrap_or(cmd);
                let clip = (cmd.clip_id == clip.id).then_some(clip);
                (cmd, clip)
            }
        };
        self.publish_play(&cmd).await?;
        if let Some(clip) = clip {
            let played = ClipPlayed {
                display: display(&clip),
                clip: Some(clip),
                greeting: true,
                command_id: cmd.command_id.clone(),
            };
            self.record(
                sid,
                0,
                Kind::ClipPlayed(played),
                &bus::ids::clip_played(&cmd.command_id),
            )
            .await?;
        }
        self.save(sid, |s| s.greeting_published = true).await?;
        tracing::info!(session = %sid, clip = %cmd.clip_id, "Greeted.");
        Ok(())
    }

    /// The clip for one line: the model's choice in `openai` mode (falling
    /// back to retrieval, with an error event, when the model fails), else
    /// the retrieval director's.
    async fn choose(
        &self,
        sid: &str,
        turn: u32,
        text: &str,
        st: &ConversationState,
    ) -> Result<Choice, bus::Error> {
        let mut searches = Vec::new();
        let mut fallback_ms = 0;
        if let Some(ai) = &self.openai {
            let started = Instant::now();
            match ai.choose(&self.bus, &self.config, text, st).await {
                Ok(c) => {
                    return Ok(Choice {
                        clip: Some(c.clip),
                        options: c.options,
                        searches: c.searches,
                        reasoning: c.reasoning,
                        search_ms: c.search_ms,
                        model_ms: c.model_ms,
                    });
                }
                Err(e) => {
                    tracing::warn!(session = %sid, error = %e, "The model failed; answering with retrieval.");
                    self.event(
                        sid,
                        turn,
                        Kind::Error(DirectorError {
                            message: format!("{e}; answered with the retrieval director"),
                        }),
                    )
                    .await;
                    fallback_ms = started.elapsed().as_millis() as u32;
                }
            }
        }
        let d = decide(&self.bus, &self.config, text, &st.played_clip_ids).await?;
        searches.push((d.query.clone(), d.mode, d.options.len() as u32));
        let n = d.options.len().min(self.config.variety as usize);
        let clip = d
            .options
            .get(pick(self.config.seed, turn, text, n))
            .cloned();
        Ok(Choice {
            clip,
            options: d.options,
            searches,
            reasoning: d.reasoning.to_string(),
            search_ms: d.search_ms,
            model_ms: fallback_ms,
        })
    }

    async fn turn(&self, sid: &str, t: Transcript, queue_ms: u32) {
        if !t.is_final || t.text.trim().is_empty() {
            return;
        }
        if let Err(e) = self.try_turn(sid, &t, queue_ms).await {
            tracing::warn!(session = %sid, error = %e, "A turn failed.");
            self.event(
                sid,
                0,
                Kind::Error(DirectorError {
                    message: format!("turn failed: {e}"),
                }),
            )
            .await;
        }
    }

    async fn try_turn(&self, sid: &str, t: &Transcript, queue_ms: u32) -> Result<(), bus::Error> {
        let started = Instant::now();
        let (st, _) = self.load(sid).await?;
        if st.handled_transcripts.contains(&t.utterance_id) {
            tracing::info!(session = %sid, utterance = %t.utterance_id, "Transcript already answered.");
            return Ok(());
        }
        let turn = st.turn + 1;
        self.event(
            sid,
            turn,
            Kind::UserLine(UserLine {
                text: t.text.clone(),
                source: t.source,
            }),
        )
        .await;

        let Choice {
            clip,
            options,
            searches,
            reasoning,
            search_ms,
            model_ms,
        } = self.choose(sid, turn, &t.text, &st).await?;
        for (query, mode, hits) in searches {
            self.event(
                sid,
                turn,
                Kind::Search(SearchDone {
                    query,
                    mode: mode as i32,
                    hits,
                }),
            )
            .await;
        }
        self.event(
            sid,
            turn,
            Kind::Options(OptionsConsidered {
                options: options.clone(),
            }),
        )
        .await;
        let Some(clip) = clip else {
            self.event(
                sid,
                turn,
                Kind::Error(DirectorError {
                    message: "the library has no clip to answer with".into(),
                }),
            )
            .await;
            self.save(sid, |s| s.handled_transcripts.push(t.utterance_id.clone()))
                .await?;
            return Ok(());
        };
        self.event(sid, turn, Kind::Reasoning(Reasoning { text: reasoning }))
            .await;
        let cmd = PlayCommand {
            session_id: sid.to_string(),
            command_id: bus::ids::turn_command(sid, &t.utterance_id),
            clip_id: clip.id.clone(),
            greeting: false,
            at_ms: now_ms(),
        };
        self.publish_play(&cmd).await?;
        let played = ClipPlayed {
            display: display(&clip),
            clip: Some(clip.clone()),
            greeting: false,
            command_id: cmd.command_id.clone(),
        };
        self.record(
            sid,
            turn,
            Kind::ClipPlayed(played),
            &bus::ids::clip_played(&cmd.command_id),
        )
        .await?;
        let total_ms = started.elapsed().as_millis() as u32 + queue_ms;
        self.event(
            sid,
            turn,
            Kind::Latency(TurnLatency {
                queue_ms,
                search_ms,
                model_ms,
                total_ms,
            }),
        )
        .await;
        let utterance = t.utterance_id.clone();
        let exchange = Exchange {
            user: t.text.clone(),
            reply: display(&clip),
        };
        self.save(sid, |s| {
            if !s.handled_transcripts.contains(&utterance) {
                s.turn = turn;
                s.played_clip_ids.push(clip.id.clone());
                s.handled_transcripts.push(utterance.clone());
                s.history.push(exchange.clone());
                let over = s.history.len().saturating_sub(HISTORY_KEPT);
                s.history.drain(..over);
            }
        })
        .await?;
        tracing::info!(session = %sid, turn, clip = %cmd.clip_id, "Answered.");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_are_fixed_by_the_seed() {
        let lines = [
            "hello",
            "where is the station",
            "thank you",
            "goodbye",
            "why",
        ];
        let run = |seed| -> Vec<usize> {
            (0..40)
                .map(|turn| pick(seed, turn, lines[turn as usize % lines.len()], 3))
                .collect()
        };
        assert_eq!(run(Some(7)), run(Some(7)), "same seed, same choices");
        assert_ne!(run(Some(7)), run(Some(8)), "another seed, other choices");
        assert!(run(Some(7)).iter().all(|&i| i < 3));
        for i in 0..3 {
            assert!(
                run(Some(7)).contains(&i),
                "every option gets chosen sometimes"
            );
        }
        // Case and spaces of the line do not matter; one option leaves no choice.
        assert_eq!(pick(Some(1), 2, " Hello ", 3), pick(Some(1), 2, "hello", 3));
        assert_eq!(pick(Some(1), 2, "hello", 1), 0);
        assert_eq!(pick(Some(1), 2, "hello", 0), 0);
    }

    #[test]
    fn configuration_is_checked() {
        use plumbing::Settings;
        let ok = Config::default();
        assert!(ok.validate().is_ok());
        let bad_flow = Config {
            flow: "three-step".into(),
            ..Config::default()
        };
        assert!(bad_flow.validate().unwrap_err().contains("two-step"));
        let no_key = Config {
            director: "openai".into(),
            ..Config::default()
        };
        assert!(no_key.validate().unwrap_err().contains("OPENAI_API_KEY"));
        let local = Config {
            director: "openai".into(),
            openai_base_url: "http://127.0.0.1:11434/v1".into(),
            ..Config::default()
        };
        assert!(local.validate().is_ok(), "a local endpoint needs no key");
        let missing_prompt = Config {
            director: "openai".into(),
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
