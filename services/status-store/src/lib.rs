//! status-store: the conversation record of every session. Consumes every
//! session event from the events stream, folds it into a record in the
//! status bucket (the only writer of that bucket), and answers
//! `cinema.status.get`.

use std::sync::atomic::{AtomicU64, Ordering};

use bus::async_nats::jetstream::kv::Store;
use bus::endpoints;
use bus::service::{self as svc, Reject};
use bus::subjects::{self, SessionEvent};
use bus::{Bus, kv_cas, kv_get, names};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::conversation_event::Kind;
use wire::v1::{
    ClientIssue, ClientJoined, ConversationEvent, PlaybackEvent, PlaybackState, PurgeReply,
    PurgeRequest, SessionCreated, SessionEnded, SessionState, StatusMessage, StatusRecord,
    StatusRequest, Transcript,
};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    pub nats_url: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            nats_url: "nats://127.0.0.1:4222".into(),
        }
    }
}

impl plumbing::Settings for Config {
    const ENV_PREFIX: &'static str = "CINEMA_STATUS_STORE_";
    fn nats_url(&self) -> &str {
        &self.nats_url
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Bus(#[from] bus::Error),
    /// Records would silently stop: the service exits (non-zero) to be
    /// restarted by whatever runs it.
    #[error("the session events stopped coming: {0}")]
    Stopped(String),
}

pub async fn run(_config: Config, bus: Bus, shutdown: CancellationToken) -> Result<(), Error> {
    let store = bus.ensure_status_bucket().await?;
    let service = svc::start(
        bus.client(),
        names::service::STATUS_STORE,
        "Conversation records",
    )
    .await?;
    let get = svc::endpoint(&service, &endpoints::status::GET).await?;
    let consumer = bus.consumer(&bus::consumers::status_store()).await?;
    let reader = store.clone();
    let purger = store.clone();
    let purge = svc::endpoint(&service, &endpoints::status::PURGE).await?;
    let serving = shutdown.child_token();
    let owners = bus::owners::Owners::new(bus.clone());
    let (_, _, consumed) = tokio::join!(
        svc::serve(purge, serving.clone(), 4, |req: PurgeRequest| {
            let store = purger.clone();
            async move {
                subjects::check_id("session id", &req.session_id)?;
                let existed = kv_get::<StatusRecord>(&store, &req.session_id)
                    .await?
                    .is_some();
                store
                    .purge(&req.session_id)
                    .await
                    .map_err(|e| Reject::unavailable(e.to_string()))?;
                Ok(PurgeReply { removed: existed })
            }
        }),
        svc::serve(get, serving.clone(), 32, |req: StatusRequest| {
            let store = reader.clone();
            async move {
                subjects::check_id("session id", &req.session_id)?;
                kv_get::<StatusRecord>(&store, &req.session_id)
                    .await?
                    .map(|(r, _)| r)
                    .ok_or_else(|| {
                        Reject::not_found(format!("unknown session {:?}", req.session_id))
                    })
            }
        }),
        async {
            let consumed = consume(consumer, store, &owners, shutdown.clone()).await;
            // Without its consumer the service would answer from records
            // that no longer move: stop answering too.
            serving.cancel();
            consumed
        },
    );
    let _ = service.stop().await;
    consumed
}

/// Folds session events into records until `shutdown` (`Ok`) or until the
/// events stop coming for another reason (an error: the service must not
/// look healthy while its records stand still).
async fn consume(
    consumer: bus::async_nats::jetstream::consumer::PullConsumer,
    store: Store,
    owners: &bus::owners::Owners,
    shutdown: CancellationToken,
) -> Result<(), Error> {
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| Error::Stopped(format!("cannot consume session events: {e}")))?;
    while let Some(msg) = bus::next_or_shutdown(&mut messages, &shutdown, "session events").await {
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        let ack = match subjects::parse_session_from(&msg.subject) {
            // What arrives under a Pi's prefix counts only for that Pi's
            // own sessions.
            Some((Some(pi), sid, event)) if subjects::check_id("session id", sid).is_ok() => {
                match owners.check(pi, sid).await {
                    Err(e) => {
                        tracing::warn!(subject = %msg.subject, error = %e, "Cannot tell whose session this is; it will be redelivered.");
                        false
                    }
                    Ok(verdict) => match verdict.refusal(pi, sid) {
                        Some(why) => {
                            let total = NOT_ITS_OWN.fetch_add(1, Ordering::Relaxed) + 1;
                            tracing::warn!(subject = %msg.subject, reason = %why, refused_total = total, "Dropped an event a Pi sent for a session not its own.");
                            true
                        }
                        None => settle(apply(&store, sid, event, &msg, seq).await, &msg),
                    },
                }
            }
            Some((_, sid, event)) => settle(apply(&store, sid, event, &msg, seq).await, &msg),
            None => true,
        };
        if ack {
            let _ = msg.ack().await;
        }
    }
    if shutdown.is_cancelled() {
        Ok(())
    } else {
        Err(Error::Stopped("the consumer's message stream ended".into()))
    }
}

/// Events a Pi sent for a session that is not its own, since start.
static NOT_ITS_OWN: AtomicU64 = AtomicU64::new(0);

/// Whether an applied event is acked: yes, unless the bus failed.
fn settle(applied: Result<(), Failure>, msg: &bus::async_nats::Message) -> bool {
    match applied {
        Ok(()) => true,
        Err(Failure::Bad(e)) => {
            tracing::warn!(subject = %msg.subject, error = %e, "Dropped a malformed session event.");
            true
        }
        Err(Failure::Bus(e)) => {
            tracing::warn!(subject = %msg.subject, error = %e, "Cannot record an event; it will be redelivered.");
            false
        }
    }
}

enum Failure {
    Bad(bus::Error),
    Bus(bus::Error),
}

async fn apply(
    store: &Store,
    sid: &str,
    event: SessionEvent,
    msg: &bus::async_nats::Message,
    seq: u64,
) -> Result<(), Failure> {
    subjects::check_id("session id", sid).map_err(Failure::Bad)?;
    let change = Change::decode(event, msg).map_err(Failure::Bad)?;
    loop {
        let (mut rec, rev) = kv_get::<StatusRecord>(store, sid)
            .await
            .map_err(Failure::Bus)?
            .unwrap_or_else(|| {
                (
                    StatusRecord {
                        session_id: sid.to_string(),
                        status: "waiting".into(),
                        ..Default::default()
                    },
                    0,
                )
            });
        if !first_time(&mut rec, seq) {
            return Ok(()); // Redelivered: already applied.
        }
        change.fold(&mut rec);
        rec.updated_at_ms = now_ms();
        if kv_cas(store, sid, &rec, rev)
            .await
            .map_err(Failure::Bus)?
            .is_some()
        {
            return Ok(());
        }
    }
}

/// What the consumer does with one message, without the bucket: decodes
/// `payload` as an `event` of the session and folds it into `rec` unless
/// stream sequence `seq` was applied already. True when it was applied;
/// an error for a payload that is not such an event (`rec` unchanged).
/// For the fuzzer (`fuzz/`) and tests.
pub fn fold_payload(
    rec: &mut StatusRecord,
    event: SessionEvent,
    payload: &[u8],
    seq: u64,
) -> Result<bool, bus::Error> {
    let change = Change::decode_parts(event, None, payload)?;
    if !first_time(rec, seq) {
        return Ok(false);
    }
    change.fold(rec);
    Ok(true)
}

/// Notes `seq` as applied to `rec`; false when it already was (a
/// redelivery, however late and whatever came between). Sequence 0 (no
/// stream) is always new.
fn first_time(rec: &mut StatusRecord, seq: u64) -> bool {
    if seq == 0 {
        return true;
    }
    if rec.applied_sequences.contains(&seq) {
        return false;
    }
    rec.applied_sequences.push(seq);
    rec.last_sequence = seq.max(rec.last_sequence);
    true
}

/// A decoded session event, ready to fold into a record.
enum Change {
    Created(SessionCreated),
    Joined,
    Transcript(Transcript),
    Conversation(ConversationEvent),
    Playback(PlaybackEvent),
    Client(ClientIssue),
    Ended(SessionEnded),
    Ignore,
}

impl Change {
    fn decode(event: SessionEvent, msg: &bus::async_nats::Message) -> Result<Change, bus::Error> {
        Change::decode_parts(event, msg.headers.as_ref(), &msg.payload)
    }

    fn decode_parts(
        event: SessionEvent,
        headers: Option<&bus::async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Result<Change, bus::Error> {
        Ok(match event {
            SessionEvent::Created => Change::Created(bus::decode(headers, payload)?),
            SessionEvent::Joined => {
                bus::decode::<ClientJoined>(headers, payload)?;
                Change::Joined
            }
            SessionEvent::Transcript => Change::Transcript(bus::decode(headers, payload)?),
            SessionEvent::Conversation => Change::Conversation(bus::decode(headers, payload)?),
            SessionEvent::Playback => Change::Playback(bus::decode(headers, payload)?),
            SessionEvent::Client => Change::Client(bus::decode(headers, payload)?),
            SessionEvent::Ended => Change::Ended(bus::decode(headers, payload)?),
            SessionEvent::Play => Change::Ignore,
        })
    }

    fn fold(&self, rec: &mut StatusRecord) {
        let push =
            |rec: &mut StatusRecord, role: &str, content: String, at_ms: i64, clip_id: &str| {
                let m = StatusMessage {
                    role: role.into(),
                    content,
                    at_ms,
                    clip_id: clip_id.into(),
                };
                // In time order, whatever order the events came in.
                let at = rec.messages.partition_point(|x| x.at_ms <= at_ms);
                rec.messages.insert(at, m.clone());
                let at = rec.display_messages.partition_point(|x| x.at_ms <= at_ms);
                rec.display_messages.insert(at, m);
            };
        match self {
            Change::Created(c) => {
                if let Some(s) = &c.session {
                    rec.pi_id = s.pi_id.clone();
                    rec.created_at_ms = s.created_at_ms;
                }
            }
            Change::Joined => {
                if rec.status == "waiting" {
                    rec.status = "active".into();
                }
            }
            Change::Transcript(t) => {
                if t.is_final && !t.text.trim().is_empty() {
                    push(rec, "user", t.text.clone(), t.at_ms, "");
                }
            }
            Change::Conversation(ev) => match &ev.kind {
                Some(Kind::ClipPlayed(p)) => {
                    let clip_id = p.clip.as_ref().map(|c| c.id.as_str()).unwrap_or_default();
                    push(rec, "assistant", p.display.clone(), ev.at_ms, clip_id);
                    rec.plays += 1;
                    if p.greeting {
                        rec.greetings += 1;
                    }
                }
                Some(Kind::Error(e)) => rec.last_error = e.message.clone(),
                Some(Kind::StatusUpdate(u)) => {
                    // Shown to people, never part of what a model reads.
                    let at = rec
                        .display_messages
                        .partition_point(|x| x.at_ms <= ev.at_ms);
                    rec.display_messages.insert(
                        at,
                        StatusMessage {
                            role: "system".into(),
                            content: u.status.clone(),
                            at_ms: ev.at_ms,
                            clip_id: String::new(),
                        },
                    );
                    rec.status_update = u.status.clone();
                    rec.status_context_json = u.context_json.clone();
                }
                _ => {}
            },
            Change::Playback(p) => match p.state() {
                PlaybackState::Failed => {
                    rec.last_error = format!("clip {} failed to play: {}", p.clip_id, p.error);
                }
                PlaybackState::Expired => {
                    rec.last_error = format!("clip {} was never played: {}", p.clip_id, p.error);
                }
                _ => {}
            },
            Change::Client(c) => rec.last_error = format!("Pi {}: {}", c.pi_id, c.detail),
            Change::Ended(e) => {
                rec.status = SessionState::try_from(e.state)
                    .unwrap_or(SessionState::Ended)
                    .status_word()
                    .into();
                rec.end_reason = e.reason.clone();
            }
            Change::Ignore => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(at_ms: i64, text: &str) -> Change {
        Change::Transcript(Transcript {
            text: text.into(),
            is_final: true,
            at_ms,
            ..Default::default()
        })
    }

    /// The record made from `events` (stream sequence, change) taken in the
    /// given order, as `apply` makes it.
    fn record(events: &[(u64, &Change)]) -> StatusRecord {
        let mut rec = StatusRecord::default();
        for (seq, change) in events {
            if first_time(&mut rec, *seq) {
                change.fold(&mut rec);
            }
        }
        rec
    }

    #[test]
    fn every_event_is_recorded_once_whatever_the_delivery_order() {
        let (a, b, c) = (line(100, "one"), line(200, "two"), line(300, "three"));
        let in_order = record(&[(4, &a), (9, &b), (12, &c)]);
        let words = |r: &StatusRecord| -> Vec<String> {
            r.messages.iter().map(|m| m.content.clone()).collect()
        };
        assert_eq!(words(&in_order), ["one", "two", "three"]);
        for order in [
            // A redelivery after later events of the session succeeded
            // (the case a "latest sequence" check loses).
            vec![(9, &b), (12, &c), (4, &a)],
            vec![(4, &a), (9, &b), (4, &a), (12, &c), (9, &b)],
            vec![(12, &c), (12, &c), (9, &b), (4, &a), (4, &a)],
        ] {
            let rec = record(&order);
            assert_eq!(
                words(&rec),
                words(&in_order),
                "{:?}",
                order.iter().map(|(s, _)| s).collect::<Vec<_>>()
            );
            assert_eq!(rec.display_messages.len(), 3);
            assert_eq!(rec.last_sequence, 12);
        }
    }

    #[tokio::test]
    async fn a_consumer_that_goes_away_stops_the_service_with_the_reason() {
        let nats = testkit::NatsServer::start();
        let bus = nats.bus("status-store-test").await;
        bus.ensure_topology().await.unwrap();
        let shutdown = CancellationToken::new();
        let service = tokio::spawn(run(Config::default(), bus.clone(), shutdown.clone()));
        let spec = bus::consumers::status_store();
        let stream = testkit::eventually(
            std::time::Duration::from_secs(20),
            "status-store's consumer",
            async || {
                let stream = bus.jetstream().get_stream(spec.stream).await.ok()?;
                stream.consumer_info(spec.name).await.ok().map(|_| stream)
            },
        )
        .await;
        stream.delete_consumer(spec.name).await.unwrap();
        let ended = tokio::time::timeout(std::time::Duration::from_secs(60), service)
            .await
            .expect("status-store to stop once its consumer is gone")
            .unwrap();
        let err = ended.expect_err("an error, so whatever runs it restarts it");
        assert!(err.to_string().contains("stopped coming"), "{err}");
        assert!(!shutdown.is_cancelled());
    }
}
