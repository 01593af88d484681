//! The relay: one core NATS subscription per wildcard of
//! `subjects::event_wildcards()` per gateway (so events reach the relay in
//! the order they were published; a visitor's utterances and audio never
//! reach it) feeds a [`tokio::sync::broadcast`]
//! channel that every SSE client reads: each event is decoded and turned
//! into JSON once, whatever the number of clients. Utterances and audio
//! frames are not relayed. Knows nothing of HTTP.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bus::subjects::{self, SessionEvent};
use futures::StreamExt;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use wire::v1::{ConversationEvent, PlayCommand, Transcript, TranscriptSource, conversation_event};

use crate::metrics::Metrics;

/// Events waiting for the slowest SSE client before it is told it lagged.
pub const CHANNEL_CAPACITY: usize = 1024;
/// Fields never shown outside: session tokens and meeting tokens.
const SECRET_FIELDS: [&str; 2] = ["token", "room_token"];

/// One bus event as every SSE client receives it.
#[derive(Debug)]
pub struct Relayed {
    /// Increases by one with every event this gateway relays.
    pub id: u64,
    pub session_id: String,
    pub event: SessionEvent,
    /// `{id, session_id, event, type, message}`.
    pub data: String,
}

/// Turns protobuf payloads into JSON by the type named in their header
/// (proto field names, 64-bit integers as numbers, enums by name, defaults
/// included), with secrets removed.
pub struct Decoder {
    pool: DescriptorPool,
}

impl Decoder {
    pub fn new() -> Decoder {
        // The descriptors are compiled into the wire crate from the same
        // protos as its types; they always decode.
        #[allow(clippy::expect_used)]
        let pool = DescriptorPool::decode(wire::FILE_DESCRIPTOR_SET)
            .expect("the wire crate's descriptors decode");
        Decoder { pool }
    }

    /// The JSON of a payload of type `type_name`, or `{"error": …}` when the
    /// type is unknown or the bytes are not a valid message of it.
    pub fn to_json(&self, type_name: &str, payload: &[u8]) -> Value {
        let Some(desc) = self.pool.get_message_by_name(type_name) else {
            return json!({ "error": format!("unknown type {type_name:?}") });
        };
        let msg = match DynamicMessage::decode(desc, payload) {
            Ok(m) => m,
            Err(e) => return json!({ "error": format!("not a valid {type_name}: {e}") }),
        };
        let options = SerializeOptions::new()
            .use_proto_field_name(true)
            .stringify_64_bit_integers(false)
            .skip_default_fields(false);
        let mut value = msg
            .serialize_with_options(serde_json::value::Serializer, &options)
            .unwrap_or_else(|e| json!({ "error": e.to_string() }));
        redact(&mut value);
        value
    }

    /// The JSON of a typed message.
    pub fn message<M: wire::Message + wire::Name>(&self, msg: &M) -> Value {
        self.to_json(&M::full_name(), &msg.encode_to_vec())
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

/// Removes every secret field, at any depth.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for f in SECRET_FIELDS {
                map.remove(f);
            }
            map.values_mut().for_each(redact);
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The gateway's side of the live updates: the broadcast channel and the
/// numbering of events.
pub struct Hub {
    tx: broadcast::Sender<Arc<Relayed>>,
    next_id: AtomicU64,
    pub decoder: Decoder,
    /// Cancelled when the relay stops (the gateway shuts down): every
    /// stream ends, so open SSE connections do not hold the shutdown up.
    closing: CancellationToken,
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new()
    }
}

impl Hub {
    pub fn new() -> Hub {
        Hub {
            tx: broadcast::channel(CHANNEL_CAPACITY).0,
            next_id: AtomicU64::new(1),
            decoder: Decoder::new(),
            closing: CancellationToken::new(),
        }
    }

    /// Cancelled when the gateway shuts down.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Relayed>> {
        self.tx.subscribe()
    }

    /// Turns one bus message into a relayed event (none for subjects that are
    /// not session events: utterances, audio frames). Never fails: a payload
    /// that does not decode is relayed with an `error` in place of its message.
    pub fn relayed(
        &self,
        subject: &str,
        headers: Option<&bus::async_nats::HeaderMap>,
        payload: &[u8],
    ) -> Option<Relayed> {
        let (sid, event) = subjects::parse_session(subject)?;
        let type_name = headers
            .and_then(|h| h.get(bus::names::TYPE_HEADER))
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        let message = if type_name.is_empty() {
            json!({ "error": "the message names no type" })
        } else {
            self.decoder.to_json(&type_name, payload)
        };
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let data = json!({
            "id": id,
            "session_id": sid,
            "event": event.token(),
            "type": type_name,
            "message": message,
        });
        Some(Relayed {
            id,
            session_id: sid.to_string(),
            event,
            data: data.to_string(),
        })
    }

    /// Sends an event to every SSE client (none listening is fine).
    pub fn send(&self, relayed: Relayed) {
        let _ = self.tx.send(Arc::new(relayed));
    }
}

/// Per session, when the visitor's latest spoken line ended (the Pi's VAD),
/// until the play command that answers it: end of speech → play.
#[derive(Default)]
pub struct SpeechToPlay {
    pending: HashMap<String, i64>,
}

impl SpeechToPlay {
    /// At most this many sessions wait for an answer (the oldest is dropped).
    const MAX_PENDING: usize = 10_000;

    /// Notes a final spoken transcript.
    pub fn heard(&mut self, t: &Transcript) {
        if t.is_final && t.source() == TranscriptSource::Speech && t.speech_end_ms > 0 {
            if self.pending.len() >= Self::MAX_PENDING
                && let Some(oldest) = self
                    .pending
                    .iter()
                    .min_by_key(|(_, at)| **at)
                    .map(|(k, _)| k.clone())
            {
                self.pending.remove(&oldest);
            }
            self.pending.insert(t.session_id.clone(), t.speech_end_ms);
        }
    }

    /// The time from the end of speech to this play command, when it answers
    /// a spoken line (not a greeting). Clocks out of step (a negative or an
    /// absurd time) give nothing.
    pub fn played(&mut self, p: &PlayCommand) -> Option<u32> {
        if p.greeting {
            return None;
        }
        let end = self.pending.remove(&p.session_id)?;
        let ms = p.at_ms - end;
        (0..=120_000).contains(&ms).then_some(ms as u32)
    }

    pub fn forget(&mut self, session_id: &str) {
        self.pending.remove(session_id);
    }
}

/// Subscribes to every session's events and relays them until `shutdown`.
/// Turn latencies (conversation `latency` events) and end of speech → play
/// (a spoken transcript's `speech_end_ms` to its play command) feed the
/// histograms.
pub async fn start_relay(
    hub: Arc<Hub>,
    metrics: Arc<Metrics>,
    bus: bus::Bus,
    shutdown: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>, bus::Error> {
    let client = bus.client().clone();
    // What a Pi says is shown only for its own sessions (as status-store
    // records it).
    let owners = bus::owners::Owners::new(bus);
    let mut subs = Vec::new();
    for subject in subjects::event_wildcards() {
        subs.push(
            client
                .subscribe(subject)
                .await
                .map_err(|e| bus::Error::nats("subscribe", e))?,
        );
    }
    let mut sub = futures::stream::select_all(subs);
    let mut speech = SpeechToPlay::default();
    Ok(tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                () = shutdown.cancelled() => break,
                msg = sub.next() => match msg {
                    Some(m) => m,
                    None => break,
                },
            };
            let Some(relayed) = hub.relayed(&msg.subject, msg.headers.as_ref(), &msg.payload)
            else {
                continue;
            };
            if let Some((Some(pi), sid, _)) = subjects::parse_session_from(&msg.subject)
                && !matches!(owners.check(pi, sid).await, Ok(bus::owners::Verdict::Owner))
            {
                tracing::debug!(subject = %msg.subject, "Not relayed: not that Pi's session.");
                continue;
            }
            metrics.event_relayed(relayed.event.token());
            if relayed.event == SessionEvent::Conversation
                && let Ok(ev) = bus::decode_message::<ConversationEvent>(&msg)
                && let Some(conversation_event::Kind::Latency(l)) = ev.kind
            {
                metrics.turn_latency(l.total_ms);
            }
            match relayed.event {
                SessionEvent::Transcript => {
                    if let Ok(t) = bus::decode_message::<Transcript>(&msg) {
                        speech.heard(&t);
                    }
                }
                SessionEvent::Play => {
                    if let Ok(p) = bus::decode_message::<PlayCommand>(&msg)
                        && let Some(ms) = speech.played(&p)
                    {
                        metrics.speech_to_play(ms);
                    }
                }
                SessionEvent::Ended => speech.forget(&relayed.session_id),
                _ => {}
            }
            hub.send(relayed);
        }
        hub.closing.cancel();
        for sub in sub.iter_mut() {
            let _ = sub.unsubscribe().await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::v1::{Clip, ClipPlayed, PlaybackEvent, PlaybackState, Session, SessionCreated};

    fn headers(type_name: &str) -> bus::async_nats::HeaderMap {
        let mut h = bus::async_nats::HeaderMap::new();
        h.insert(bus::names::TYPE_HEADER, type_name);
        h
    }

    fn data(r: &Relayed) -> Value {
        serde_json::from_str(&r.data).unwrap_or_default()
    }

    #[test]
    fn events_become_json_with_increasing_ids() {
        let hub = Hub::new();
        let ev = ConversationEvent {
            session_id: "s1".into(),
            turn: 2,
            at_ms: 1_700_000_000_123,
            kind: Some(conversation_event::Kind::ClipPlayed(ClipPlayed {
                clip: Some(Clip {
                    id: "c1".into(),
                    caption: "The station is down the road.".into(),
                    start_s: 1.5,
                    end_s: 3.25,
                    ..Default::default()
                }),
                display: "[VIDEO: x]".into(),
                greeting: false,
                command_id: "cmd".into(),
            })),
        };
        let (h, payload) = bus::encode(&ev);
        let a = hub
            .relayed("cinema.session.s1.conversation", Some(&h), &payload)
            .unwrap_or_else(|| panic!("relayed"));
        assert_eq!(a.event, SessionEvent::Conversation);
        let d = data(&a);
        assert_eq!(d["session_id"], "s1");
        assert_eq!(d["event"], "conversation");
        assert_eq!(d["type"], "cinema.v1.ConversationEvent");
        assert_eq!(d["message"]["at_ms"], 1_700_000_000_123_i64, "{d}");
        assert_eq!(d["message"]["clip_played"]["clip"]["end_s"], 3.25);
        assert_eq!(
            d["message"]["clip_played"]["clip"]["caption"],
            "The station is down the road."
        );

        let p = PlaybackEvent {
            state: PlaybackState::Started as i32,
            ..Default::default()
        };
        let (h, payload) = bus::encode(&p);
        let b = hub
            .relayed("cinema.pi.p1.session.s1.playback", Some(&h), &payload)
            .unwrap_or_else(|| panic!("relayed"));
        assert_eq!(b.id, a.id + 1);
        assert_eq!(data(&b)["message"]["state"], "PLAYBACK_STATE_STARTED");
    }

    #[test]
    fn secrets_never_leave_and_bad_payloads_are_described() {
        let hub = Hub::new();
        let created = SessionCreated {
            session: Some(Session {
                id: "s1".into(),
                token: "secret-token".into(),
                room_token: "secret-room".into(),
                ..Default::default()
            }),
        };
        let (h, payload) = bus::encode(&created);
        let r = hub
            .relayed("cinema.session.s1.created", Some(&h), &payload)
            .unwrap_or_else(|| panic!("relayed"));
        assert!(!r.data.contains("secret"), "{}", r.data);
        assert_eq!(data(&r)["message"]["session"]["id"], "s1");

        let bad = hub
            .relayed(
                "cinema.pi.p1.session.s1.playback",
                Some(&headers("cinema.v1.PlaybackEvent")),
                &[0x0a, 0x05, b'a'],
            )
            .unwrap_or_else(|| panic!("relayed"));
        assert!(data(&bad)["message"]["error"].as_str().is_some());
        let unknown = hub
            .relayed(
                "cinema.pi.p1.session.s1.playback",
                Some(&headers("cinema.v1.Nope")),
                b"",
            )
            .unwrap_or_else(|| panic!("relayed"));
        assert!(data(&unknown)["message"]["error"].as_str().is_some());
        let untyped = hub
            .relayed("cinema.pi.p1.session.s1.playback", None, b"")
            .unwrap_or_else(|| panic!("relayed"));
        assert!(data(&untyped)["message"]["error"].as_str().is_some());
    }

    #[test]
    fn audio_and_utterances_are_not_relayed() {
        let hub = Hub::new();
        assert!(
            hub.relayed("cinema.pi.p1.session.s1.audio", None, b"")
                .is_none()
        );
        assert!(
            hub.relayed("cinema.pi.p1.session.s1.utterance", None, b"")
                .is_none()
        );
        assert!(hub.relayed("cinema.rooms.create", None, b"").is_none());
    }
}
