//! The director at work on one event: greets once when a session's client
//! joins, answers each final transcript with one clip (the retrieval
//! director, or a model through `openai` falling back to it), records what
//! it did as conversation events, and keeps each session's state
//! (`ConversationState`, compare-and-set in its bucket).

use std::time::{Duration, Instant};

use bus::async_nats::jetstream::AckKind;
use bus::async_nats::jetstream::kv::Store;
use bus::async_nats::jetstream::stream::Stream;
use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get};
use wire::now_ms;
use wire::v1::conversation_event::Kind;
use wire::v1::{
    ClientJoined, Clip, ClipPlayed, ConversationEvent, ConversationState, DirectorError, Exchange,
    NudgeKind, NudgeReply, NudgeRequest, OptionsConsidered, PlayCommand, Reasoning, SearchDone,
    SearchMode, SessionRef, SessionReply, StatusUpdate, Transcript, TranscriptSource, TurnLatency,
    UserLine,
};

use crate::retrieval::{decide, pick, search};
use crate::sessions::Job;
use crate::{Config, display, openai};

pub(crate) struct Director {
    pub(crate) bus: Bus,
    pub(crate) state: Store,
    pub(crate) config: Config,
    pub(crate) openai: Option<openai::OpenAi>,
    pub(crate) events: Stream,
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

impl Director {
    /// Handles one event, telling the stream it is still being worked on
    /// while a slow model thinks (so it is not redelivered elsewhere).
    pub(crate) async fn handle_alive(&self, sid: &str, job: &Job) {
        alive(std::slice::from_ref(job), self.handle(sid, job)).await;
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
                    Ok(t) => self.turn(sid, t, job.queued_ms, &[]).await,
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

    pub(crate) async fn load(&self, sid: &str) -> Result<(ConversationState, u64), bus::Error> {
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
    pub(crate) async fn save(
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
                &endpoints::rooms::GET,
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
        let tried = self
            .patiently(sid, "greeting", |_| self.try_greet(sid, pi))
            .await;
        if let Err(why) = tried {
            self.event(
                sid,
                0,
                Kind::Error(DirectorError {
                    message: format!("greeting failed: {why}"),
                }),
            )
            .await;
        }
    }

    /// Runs `attempt` (given its number, from 0) until it succeeds, fails
    /// for good, or has failed for a passing reason for longer than
    /// `retry_for_s`; waits [`retry_delay`] between tries. The error says
    /// why, and after how many tries, for the session's record.
    async fn patiently<F, Fut>(&self, sid: &str, what: &str, attempt: F) -> Result<(), String>
    where
        F: Fn(u32) -> Fut,
        Fut: std::future::Future<Output = Result<(), bus::Error>>,
    {
        let started = Instant::now();
        let patience = Duration::from_secs(self.config.retry_for_s);
        let mut tries = 0u32;
        loop {
            match attempt(tries).await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() && started.elapsed() < patience => {
                    let wait = retry_delay(tries);
                    tracing::warn!(session = %sid, error = %e, tries = tries + 1, retry_in = ?wait, "A {what} could not be made now; trying again.");
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    tracing::warn!(session = %sid, error = %e, tries = tries + 1, "A {what} failed; given up.");
                    return Err(if e.is_transient() {
                        format!(
                            "{e} (given up after {} tries over {:.0} s)",
                            tries + 1,
                            started.elapsed().as_secs_f64()
                        )
                    } else {
                        e.to_string()
                    });
                }
            }
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

    /// Speaks to a quiet visitor (room-manager asks): an invite once per
    /// turn, a goodbye once per session. Asked again (a retry, another
    /// room-manager), it plays nothing new and answers with the same
    /// command.
    pub(crate) async fn nudge(
        &self,
        req: NudgeRequest,
    ) -> Result<NudgeReply, bus::service::Reject> {
        let unavailable = |e: bus::Error| bus::service::Reject::unavailable(e.to_string());
        subjects::check_id("session id", &req.session_id)?;
        let sid = req.session_id.as_str();
        let (st, _) = self.load(sid).await.map_err(unavailable)?;
        let (query, command_id, what) = match req.kind() {
            NudgeKind::Invite => (
                &self.config.invite_query,
                bus::ids::invite_command(sid, st.turn),
                "inviting them back",
            ),
            NudgeKind::Goodbye => (
                &self.config.goodbye_query,
                bus::ids::goodbye_command(sid),
                "saying goodbye",
            ),
            NudgeKind::Unspecified => {
                return Err(bus::service::Reject::bad_request(
                    "kind must be invite or goodbye",
                ));
            }
        };
        // Not one of the clips just played, if the library has another.
        let recent: Vec<String> = st.played_clip_ids.iter().rev().take(3).cloned().collect();
        let mut options = Vec::new();
        for (mode, exclude) in [
            (SearchMode::Description, &recent),
            (SearchMode::Answer, &recent),
            (SearchMode::Description, &Vec::new()),
        ] {
            options = self
                .search(query, mode, exclude)
                .await
                .map_err(unavailable)?;
            if !options.is_empty() {
                break;
            }
        }
        let Some(clip) = options.into_iter().next() else {
            return Err(bus::service::Reject::unavailable(format!(
                "the library has no clip for {query:?}"
            )));
        };
        let cmd = PlayCommand {
            session_id: sid.to_string(),
            command_id: command_id.clone(),
            clip_id: clip.id.clone(),
            greeting: false,
            at_ms: now_ms(),
        };
        // The message id makes a second publish of the same command a no-op.
        self.publish_play(&cmd).await.map_err(unavailable)?;
        // Why, in the session's record: a status line the dashboard shows.
        let why = format!(
            "The visitor has said nothing for {} s: {what}.",
            req.quiet_s
        );
        self.event(
            sid,
            st.turn,
            Kind::Reasoning(Reasoning { text: why.clone() }),
        )
        .await;
        self.record(
            sid,
            st.turn,
            Kind::StatusUpdate(StatusUpdate {
                status: why,
                context_json: serde_json::json!({
                    "nudge": if req.kind() == NudgeKind::Goodbye { "goodbye" } else { "invite" },
                    "quiet_s": req.quiet_s,
                    "clip_id": clip.id,
                })
                .to_string(),
            }),
            &format!("{}.why", bus::ids::clip_played(&command_id)),
        )
        .await
        .map_err(unavailable)?;
        self.record(
            sid,
            st.turn,
            Kind::ClipPlayed(ClipPlayed {
                display: display(&clip),
                clip: Some(clip.clone()),
                greeting: false,
                command_id: command_id.clone(),
            }),
            &bus::ids::clip_played(&command_id),
        )
        .await
        .map_err(unavailable)?;
        let (clip_id, kind) = (clip.id.clone(), req.kind());
        self.save(sid, |s| {
            if s.played_clip_ids.last().is_none_or(|c| *c != clip_id) {
                s.played_clip_ids.push(clip_id.clone());
            }
            match kind {
                NudgeKind::Goodbye => s.goodbye_published = true,
                _ => s.invites = s.invites.saturating_add(1),
            }
        })
        .await
        .map_err(unavailable)?;
        tracing::info!(session = %sid, clip = %clip.id, command = %command_id, quiet_s = req.quiet_s, "Spoke to a quiet visitor.");
        Ok(NudgeReply {
            command_id,
            clip_id: clip.id.clone(),
            length_s: (clip.end_s - clip.start_s).max(0.0),
        })
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

    /// A transcript event's line, when it is one to answer (final, not empty).
    /// Held lines are joined only to spoken ones.
    pub(crate) fn line_of(&self, job: &Job) -> Option<Transcript> {
        match subjects::parse_session(&job.msg.subject) {
            Some((_, SessionEvent::Transcript)) => bus::decode_message::<Transcript>(&job.msg)
                .ok()
                .filter(|t| t.is_final && !t.text.trim().is_empty()),
            _ => None,
        }
    }

    /// How long a line is held for what may follow it (zero: not held).
    pub(crate) fn hold_for(&self, text: &str) -> Duration {
        Duration::from_millis(match crate::phrase::hold(text) {
            crate::phrase::Hold::Open => self.config.join_within_ms,
            crate::phrase::Hold::Statement => self.config.statement_wait_ms,
            crate::phrase::Hold::Whole => 0,
        })
    }

    /// The event's line when it is held for what may follow it: spoken
    /// lines only (a typed line is sent whole).
    pub(crate) fn open_line(&self, job: &Job) -> Option<Transcript> {
        self.line_of(job)
            .filter(|t| t.source() == TranscriptSource::Speech && !self.hold_for(&t.text).is_zero())
    }

    /// The visitor's speech on session `sid`'s Pi, while a line is held:
    /// the Pi's 20 ms audio frames, and the Pi (`None` when it is unknown).
    pub(crate) async fn speech_of(
        &self,
        sid: &str,
    ) -> Option<(String, bus::async_nats::Subscriber)> {
        let pi = self.pi_of(sid).await.ok()?;
        let frames = self
            .bus
            .client()
            .subscribe(subjects::audio(&pi, sid))
            .await
            .ok()?;
        Some((pi, frames))
    }

    /// Whether Pi `pi` has an utterance of session `sid` waiting for stt or
    /// being transcribed (the work queue keeps it until its transcript is
    /// published): a line of the visitor's is on its way.
    pub(crate) async fn utterance_pending(&self, pi: &str, sid: &str) -> bool {
        let Ok(stream) = self
            .bus
            .jetstream()
            .get_stream(bus::names::UTTERANCES_STREAM)
            .await
        else {
            return false;
        };
        stream
            .get_last_raw_message_by_subject(&subjects::utterance(pi, sid))
            .await
            .is_ok()
    }

    /// Answers `line`, the lines of `jobs` joined, once; the events are kept
    /// from being redelivered meanwhile.
    pub(crate) async fn turn_joined(&self, sid: &str, line: Transcript, jobs: &[Job]) {
        let earlier: Vec<String> = jobs
            .iter()
            .filter_map(|j| self.line_of(j))
            .map(|t| t.utterance_id)
            .filter(|id| *id != line.utterance_id)
            .collect();
        let queued_ms = jobs.first().map_or(0, |j| j.queued_ms);
        alive(jobs, self.turn(sid, line, queued_ms, &earlier)).await;
    }

    async fn turn(&self, sid: &str, t: Transcript, queue_ms: u32, earlier: &[String]) {
        if !t.is_final || t.text.trim().is_empty() {
            return;
        }
        let tried = self
            .patiently(sid, "turn", |attempt| {
                self.try_turn(sid, &t, queue_ms, attempt, earlier)
            })
            .await;
        if let Err(why) = tried {
            self.event(
                sid,
                0,
                Kind::Error(DirectorError {
                    message: format!("turn failed: {why}"),
                }),
            )
            .await;
        }
    }

    async fn try_turn(
        &self,
        sid: &str,
        t: &Transcript,
        queue_ms: u32,
        attempt: u32,
        earlier: &[String],
    ) -> Result<(), bus::Error> {
        let started = Instant::now();
        let (st, _) = self.load(sid).await?;
        if st.handled_transcripts.contains(&t.utterance_id) {
            tracing::info!(session = %sid, utterance = %t.utterance_id, "Transcript already answered.");
            return Ok(());
        }
        let turn = st.turn + 1;
        if attempt == 0 {
            self.event(
                sid,
                turn,
                Kind::UserLine(UserLine {
                    text: t.text.clone(),
                    source: t.source,
                }),
            )
            .await;
        }

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
            self.save(sid, |s| {
                for id in earlier.iter().chain([&t.utterance_id]) {
                    if !s.handled_transcripts.contains(id) {
                        s.handled_transcripts.push(id.clone());
                    }
                }
            })
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
                for id in earlier {
                    if !s.handled_transcripts.contains(id) {
                        s.handled_transcripts.push(id.clone());
                    }
                }
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

/// Runs `work`, telling the stream every 5 s that `jobs` are still being
/// worked on (so a slow model does not get them redelivered elsewhere).
async fn alive(jobs: &[Job], work: impl std::future::Future<Output = ()>) {
    tokio::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.tick().await;
    loop {
        tokio::select! {
            () = &mut work => return,
            _ = tick.tick() => {
                for j in jobs {
                    let _ = j.msg.ack_with(AckKind::Progress).await;
                }
            }
        }
    }
}

/// The wait before try `attempt + 1` of a greeting or turn: 0.25 s doubling
/// to at most 5 s.
pub(crate) fn retry_delay(attempt: u32) -> Duration {
    Duration::from_millis(250)
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(Duration::from_secs(5))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_ceiling() {
        for (attempt, ms) in [
            (0, 250),
            (1, 500),
            (2, 1000),
            (3, 2000),
            (4, 4000),
            (5, 5000),
            (40, 5000),
            (u32::MAX, 5000),
        ] {
            assert_eq!(retry_delay(attempt), Duration::from_millis(ms), "{attempt}");
        }
    }

    #[test]
    fn only_passing_failures_are_tried_again() {
        let s = || "cinema.clips.search".to_string();
        for (e, transient) in [
            (bus::Error::NoResponders { subject: s() }, true),
            (bus::Error::Timeout { subject: s() }, true),
            (
                bus::Error::Remote {
                    code: 503,
                    message: "being ingested".into(),
                },
                true,
            ),
            (
                bus::Error::Remote {
                    code: 400,
                    message: "bad".into(),
                },
                false,
            ),
            (
                bus::Error::Remote {
                    code: 404,
                    message: "gone".into(),
                },
                false,
            ),
            (
                bus::Error::Decode {
                    type_name: "x".into(),
                    reason: "y".into(),
                },
                false,
            ),
        ] {
            assert_eq!(e.is_transient(), transient, "{e}");
        }
    }
}
