//! The durable consumers of the streams, each written once: which stream,
//! its durable name, the subjects it takes, how long a message may be held
//! before it is delivered again and how often. A service opens its own with
//! [`crate::Bus::consumer`].

use std::time::Duration;

use crate::names;
use crate::subjects::{self, SessionEvent};

/// One durable pull consumer (explicit acks).
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub stream: &'static str,
    pub name: &'static str,
    /// Empty: every subject of the stream.
    pub filters: Vec<String>,
    pub ack_wait: Duration,
    /// Deliveries at most; -1 for no limit.
    pub max_deliver: i64,
}

/// llm: the joins it greets, the transcripts it answers, the ends that let
/// it forget a session.
pub fn llm() -> Spec {
    Spec {
        stream: names::EVENTS_STREAM,
        name: names::LLM_CONSUMER,
        filters: vec![
            SessionEvent::Joined.wildcard(),
            SessionEvent::Transcript.wildcard(),
            SessionEvent::Ended.wildcard(),
        ],
        ack_wait: Duration::from_secs(30),
        max_deliver: 5,
    }
}

/// status-store: every session event, for the records.
pub fn status_store() -> Spec {
    Spec {
        stream: names::EVENTS_STREAM,
        name: names::STATUS_CONSUMER,
        filters: Vec::new(),
        ack_wait: Duration::from_secs(30),
        max_deliver: 10,
    }
}

/// stt's workers, sharing the utterances work queue: a worker that dies
/// holding one gives it back after `ack_wait`.
pub fn stt(ack_wait: Duration, max_deliver: u32) -> Spec {
    Spec {
        stream: names::UTTERANCES_STREAM,
        name: names::STT_CONSUMER,
        filters: vec![subjects::UTTERANCE_WILDCARD.to_string()],
        ack_wait,
        max_deliver: i64::from(max_deliver),
    }
}

/// room-manager's hand-over of play commands to the Pis: a command is held
/// until its Pi takes it or it expires (`expiry`), and taken back only if
/// the replica holding it died.
pub fn plays(expiry: Duration) -> Spec {
    Spec {
        stream: names::EVENTS_STREAM,
        name: names::PLAYS_CONSUMER,
        filters: vec![SessionEvent::Play.wildcard()],
        ack_wait: expiry + Duration::from_secs(30),
        max_deliver: -1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consumer_has_its_own_name_and_subjects_of_its_stream() {
        let all = [
            llm(),
            status_store(),
            stt(Duration::from_secs(60), 3),
            plays(Duration::from_secs(30)),
        ];
        let names: std::collections::HashSet<_> = all.iter().map(|s| s.name).collect();
        assert_eq!(names.len(), all.len());
        for spec in &all {
            let prefix = if spec.stream == names::UTTERANCES_STREAM {
                "cinema.pi."
            } else {
                "cinema."
            };
            assert!(
                spec.filters.iter().all(|f| f.starts_with(prefix)),
                "{spec:?}"
            );
        }
        assert_eq!(
            plays(Duration::from_secs(30)).ack_wait,
            Duration::from_secs(60)
        );
    }
}
