//! The session tasks of one replica: one task per active session, fed by
//! the durable consumer, handling its session's events one at a time, in
//! order (across replicas: `order`); idle tasks go after a while.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::async_nats::jetstream::AckKind;
use bus::async_nats::jetstream::Message;
use bus::subjects::{self, SessionEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wire::now_ms;

use crate::director::Director;

/// One event of a session, waiting for its turn.
pub(crate) struct Job {
    pub(crate) msg: Message,
    pub(crate) queued_ms: u32,
}

/// The session tasks of this replica: one per active session, each handling
/// its session's events one at a time, in order.
pub(crate) type Sessions = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>;

/// How often a held line looks again for an utterance still on its way.
const UTTERANCE_POLL: Duration = Duration::from_millis(200);

/// How long a session task waits for more events before it goes.
const SESSION_IDLE: Duration = Duration::from_secs(30);

/// The stream sequence of a job's event (0 when unknown).
fn seq_of(job: &Job) -> u64 {
    job.msg.info().map(|i| i.stream_sequence).unwrap_or(0)
}

/// Handles one session's events, one at a time, in stream order — also
/// across replicas (see [`Director::wait_for_turn`]). Events held here are
/// taken earliest first: an earlier event redelivered to this replica (its
/// replica died holding it) goes before the later one that waits for it.
pub(crate) async fn session_task(
    director: Arc<Director>,
    sid: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    sessions: Sessions,
    shutdown: CancellationToken,
) {
    let mut held: BTreeMap<u64, Job> = BTreeMap::new();
    loop {
        while let Ok(job) = rx.try_recv() {
            held.insert(seq_of(&job), job);
        }
        let Some((seq, job)) = held.pop_first() else {
            match tokio::time::timeout(SESSION_IDLE, rx.recv()).await {
                Ok(Some(job)) => {
                    held.insert(seq_of(&job), job);
                }
                Ok(None) => break,
                Err(_) => {
                    let mut map = sessions.lock().unwrap_or_else(|p| p.into_inner());
                    if rx.is_empty() {
                        map.remove(&sid);
                        break;
                    }
                }
            }
            continue;
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
        if !ended {
            match director
                .wait_for_turn(&sid, seq, &job.msg, &mut rx, &mut held, &shutdown)
                .await
            {
                Turn::Go => {}
                Turn::Earlier => {
                    // An earlier event came: it goes first, this one after.
                    held.insert(seq, job);
                    continue;
                }
                Turn::Stop => {
                    let _ = job.msg.ack_with(AckKind::Nak(None)).await;
                    continue;
                }
            }
        }
        if !ended && let Some(open) = director.open_line(&job) {
            // The line stops mid-phrase: the visitor's next line, if it
            // comes soon, belongs to the same turn.
            let (line, jobs) = gather(&director, open, job, &mut rx, &mut held).await;
            director.turn_joined(&sid, line, &jobs).await;
            let last = jobs.iter().map(seq_of).max().unwrap_or(seq);
            if let Err(e) = director
                .save(&sid, |s| s.last_seq = s.last_seq.max(last))
                .await
            {
                tracing::warn!(session = %sid, error = %e, "Cannot record the events as handled.");
            }
            for j in &jobs {
                if let Err(e) = j.msg.ack().await {
                    tracing::warn!(error = %e, "Cannot ack an event.");
                }
            }
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
            for (_, late) in std::mem::take(&mut held) {
                let _ = late.msg.ack().await;
            }
            break;
        }
    }
}

/// A held line (one that stops mid-phrase, or a statement) and the lines
/// that follow it while it is held, joined while the result is still held:
/// one turn, and the events that made it (the first first). A line is held
/// for [`Director::hold_for`] after it came, and while the visitor is
/// heard speaking (the Pi's audio frames) until `after_speech_ms` after
/// they stop, and while an utterance of theirs waits for stt or is being
/// transcribed (a loaded stt can take longer than `after_speech_ms`), never
/// beyond `max_hold_ms` in all. Any other event ends the gathering and
/// waits in `held`.
async fn gather(
    director: &Director,
    mut line: wire::v1::Transcript,
    first: Job,
    rx: &mut mpsc::UnboundedReceiver<Job>,
    held: &mut BTreeMap<u64, Job>,
) -> (wire::v1::Transcript, Vec<Job>) {
    use futures::StreamExt;
    let started = tokio::time::Instant::now();
    let cap = started + Duration::from_millis(director.config.max_hold_ms);
    let after_speech = Duration::from_millis(director.config.after_speech_ms);
    let (pi, mut speech) = director.speech_of(&line.session_id).await.unzip();
    let mut jobs = vec![first];
    loop {
        let hold = director.hold_for(&line.text);
        if hold.is_zero() {
            break;
        }
        let mut deadline = (tokio::time::Instant::now() + hold).min(cap);
        let next = loop {
            if let Some(entry) = held.first_entry() {
                break Some(entry.remove());
            }
            let frame = async {
                match speech.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                job = rx.recv() => match job {
                    Some(job) => { held.insert(seq_of(&job), job); }
                    None => break None,
                },
                Some(m) = frame => {
                    if bus::decode_message::<wire::v1::AudioFrame>(&m).is_ok_and(|f| f.speech) {
                        deadline = deadline.max(tokio::time::Instant::now() + after_speech).min(cap);
                    }
                }
                () = tokio::time::sleep_until(deadline) => {
                    // A line still on its way keeps the held one waiting.
                    let on_its_way = match &pi {
                        Some(pi) => director.utterance_pending(pi, &line.session_id).await,
                        None => false,
                    };
                    if !on_its_way || tokio::time::Instant::now() >= cap {
                        break None;
                    }
                    deadline = (tokio::time::Instant::now() + UTTERANCE_POLL).min(cap);
                }
            }
        };
        let Some(next) = next else { break };
        match director
            .line_of(&next)
            .filter(|t| t.source() == wire::v1::TranscriptSource::Speech)
        {
            Some(more) => {
                tracing::info!(session = %line.session_id, first = %line.text, then = %more.text, "Joined a held line to the next.");
                line.text = crate::phrase::join(&line.text, &more.text);
                line.utterance_id = more.utterance_id;
                line.speech_end_ms = more.speech_end_ms;
                line.at_ms = more.at_ms;
                jobs.push(next);
            }
            None => {
                held.insert(seq_of(&next), next);
                break;
            }
        }
    }
    (line, jobs)
}

/// What an event waiting for its turn does next.
pub(crate) enum Turn {
    /// Every earlier event of the session is handled: decide it.
    Go,
    /// An earlier event of the session arrived here: decide that first.
    Earlier,
    /// The replica is stopping.
    Stop,
}

pub(crate) fn time_now_ns() -> i128 {
    i128::from(now_ms()) * 1_000_000
}
