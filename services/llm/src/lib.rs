//! llm: the director. Greets once when a session's Pi joins and answers every
//! final, non-empty transcript with one clip. The `retrieval` director
//! (default, offline) answers with the line that followed the most similar
//! line in a film, falling back to description search and generic replies.

use std::time::{Duration, Instant};

use bus::async_nats::jetstream::kv::Store;
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get, names};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::conversation_event::Kind;
use wire::v1::{
    ClientJoined, Clip, ClipPlayed, ConversationEvent, ConversationState, DirectorError,
    OptionsConsidered, PlayCommand, Reasoning, SearchDone, SearchMode, SearchReply, SearchRequest,
    Transcript, TurnLatency, UserLine,
};

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
    pub options: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
            director: "retrieval".into(),
            greeting_query: "hello welcome good evening hi".into(),
            fallback_queries: vec!["I don't know".into(), "Tell me more".into()],
            options: 5,
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_LLM_";
    const SEED_ENV: &'static [(&'static str, &'static str)] = &[("CINEMA_DIRECTOR", "director")];
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
    fn validate(&self) -> Result<(), String> {
        match self.director.as_str() {
            "retrieval" => Ok(()),
            "openai" => {
                Err("director `openai` is not available in this build yet; use `retrieval`".into())
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
}

struct Director {
    bus: Bus,
    state: Store,
    config: Config,
}

pub async fn run(config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let director = Director {
        state: bus.kv(names::CONVERSATIONS_BUCKET).await?,
        bus: bus.clone(),
        config,
    };
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
    tracing::info!(director = %director.config.director, "The director is ready.");
    loop {
        let msg = tokio::select! {
            () = shutdown.cancelled() => break,
            m = messages.next() => match m {
                Some(Ok(m)) => m,
                Some(Err(e)) => { tracing::warn!(error = %e, "Event stream interrupted."); continue; }
                None => break,
            },
        };
        let queued_ms = msg
            .info()
            .map(|i| (time_now_ns() - i.published.unix_timestamp_nanos()).max(0) / 1_000_000)
            .unwrap_or(0) as u32;
        match subjects::parse_session(&msg.subject) {
            Some((sid, SessionEvent::Joined)) => match bus::decode_message::<ClientJoined>(&msg) {
                Ok(_) => director.greet(sid).await,
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed join event.")
                }
            },
            Some((sid, SessionEvent::Transcript)) => {
                match bus::decode_message::<Transcript>(&msg) {
                    Ok(t) => director.turn(sid, t, queued_ms).await,
                    Err(e) => {
                        tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed transcript.")
                    }
                }
            }
            Some((sid, SessionEvent::Ended)) => {
                // The session is over: its director state goes (no leaked keys).
                match director.state.purge(sid).await {
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
        if let Err(e) = msg.ack().await {
            tracing::warn!(error = %e, "Cannot ack an event.");
        }
    }
    let _ = service.stop().await;
    Ok(())
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
    let reply: SearchReply = bus
        .request(
            subjects::clips::SEARCH.to_string(),
            &SearchRequest {
                query: query.to_string(),
                mode: mode as i32,
                limit: config.options,
                exclude_ids: exclude.to_vec(),
                ..Default::default()
            },
        )
        .await?;
    Ok(reply.hits.into_iter().filter_map(|h| h.clip).collect())
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

/// How the first generation showed a played clip.
pub fn display(clip: &Clip) -> String {
    format!("[VIDEO: {} | \"{}\"]", clip.film_title, clip.caption)
}

impl Director {
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

    async fn publish_play(&self, cmd: &PlayCommand) -> Result<(), bus::Error> {
        self.bus
            .publish_durable(
                subjects::session(&cmd.session_id, SessionEvent::Play),
                cmd,
                &cmd.command_id,
            )
            .await
    }

    /// Greets exactly once per session: the greeting is stored before it is
    /// published, and a join after it was published (a reconnect, a
    /// redelivery) plays nothing.
    async fn greet(&self, sid: &str) {
        if let Err(e) = self.try_greet(sid).await {
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

    async fn try_greet(&self, sid: &str) -> Result<(), bus::Error> {
        let (st, _) = self.load(sid).await?;
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
                    command_id: format!("greet-{sid}"),
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
                &format!("{}-played", cmd.command_id),
            )
            .await?;
        }
        self.save(sid, |s| s.greeting_published = true).await?;
        tracing::info!(session = %sid, clip = %cmd.clip_id, "Greeted.");
        Ok(())
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

        let Decision {
            options,
            mode,
            query,
            reasoning,
            search_ms,
        } = decide(&self.bus, &self.config, &t.text, &st.played_clip_ids).await?;
        self.event(
            sid,
            turn,
            Kind::Search(SearchDone {
                query: query.clone(),
                mode: mode as i32,
                hits: options.len() as u32,
            }),
        )
        .await;
        self.event(
            sid,
            turn,
            Kind::Options(OptionsConsidered {
                options: options.clone(),
            }),
        )
        .await;
        let Some(clip) = options.into_iter().next() else {
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
        self.event(
            sid,
            turn,
            Kind::Reasoning(Reasoning {
                text: reasoning.into(),
            }),
        )
        .await;
        let cmd = PlayCommand {
            session_id: sid.to_string(),
            command_id: format!("turn-{sid}-{}", t.utterance_id),
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
            &format!("{}-played", cmd.command_id),
        )
        .await?;
        let total_ms = started.elapsed().as_millis() as u32 + queue_ms;
        self.event(
            sid,
            turn,
            Kind::Latency(TurnLatency {
                queue_ms,
                search_ms,
                model_ms: 0,
                total_ms,
            }),
        )
        .await;
        let utterance = t.utterance_id.clone();
        self.save(sid, |s| {
            if !s.handled_transcripts.contains(&utterance) {
                s.turn = turn;
                s.played_clip_ids.push(clip.id.clone());
                s.handled_transcripts.push(utterance.clone());
            }
        })
        .await?;
        tracing::info!(session = %sid, turn, clip = %cmd.clip_id, "Answered.");
        Ok(())
    }
}
