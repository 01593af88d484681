//! Subject builders. Session facts live under `cinema.session.{sid}.{event}`,
//! requests under `cinema.{service}.{verb}`.

use crate::Error;

/// The events of a session that the events stream keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    Created,
    Joined,
    Transcript,
    Play,
    Playback,
    Conversation,
    Client,
    Ended,
}

impl SessionEvent {
    pub const ALL: [SessionEvent; 8] = [
        Self::Created,
        Self::Joined,
        Self::Transcript,
        Self::Play,
        Self::Playback,
        Self::Conversation,
        Self::Client,
        Self::Ended,
    ];

    pub fn token(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Joined => "joined",
            Self::Transcript => "transcript",
            Self::Play => "play",
            Self::Playback => "playback",
            Self::Conversation => "conversation",
            Self::Client => "client",
            Self::Ended => "ended",
        }
    }

    fn from_token(token: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.token() == token)
    }

    /// `cinema.session.*.{event}`: this event of every session.
    pub fn wildcard(self) -> String {
        format!("cinema.session.*.{}", self.token())
    }
}

/// `cinema.session.{sid}.{event}`.
pub fn session(session_id: &str, event: SessionEvent) -> String {
    format!("cinema.session.{session_id}.{}", event.token())
}

/// `cinema.session.{sid}.utterance` (work-queue stream).
pub fn utterance(session_id: &str) -> String {
    format!("cinema.session.{session_id}.utterance")
}

pub const UTTERANCE_WILDCARD: &str = "cinema.session.*.utterance";

/// The session id of an utterance subject.
pub fn parse_utterance(subject: &str) -> Option<&str> {
    let sid = subject
        .strip_prefix("cinema.session.")?
        .strip_suffix(".utterance")?;
    (!sid.is_empty() && !sid.contains('.')).then_some(sid)
}

/// `cinema.session.{sid}.audio` (core NATS only).
pub fn audio(session_id: &str) -> String {
    format!("cinema.session.{session_id}.audio")
}

/// The audio frames of every session.
pub const AUDIO_WILDCARD: &str = "cinema.session.*.audio";

/// Everything said about every session: its events, commands, utterances
/// and audio frames.
pub const SESSION_WILDCARD: &str = "cinema.session.>";

/// The session id of an audio frame subject (`cinema.session.{sid}.audio`).
pub fn parse_audio(subject: &str) -> Option<&str> {
    subject
        .strip_prefix("cinema.session.")?
        .strip_suffix(".audio")
        .filter(|sid| !sid.contains('.'))
}

/// Splits a session event subject into its session id and event.
pub fn parse_session(subject: &str) -> Option<(&str, SessionEvent)> {
    let rest = subject.strip_prefix("cinema.session.")?;
    let (sid, event) = rest.split_once('.')?;
    Some((sid, SessionEvent::from_token(event)?))
}

/// Requests to room-manager.
pub mod rooms {
    pub const GROUP: &str = "cinema.rooms";
    pub const CREATE: &str = "cinema.rooms.create";
    pub const GET: &str = "cinema.rooms.get";
    pub const END: &str = "cinema.rooms.end";
    pub const LIST: &str = "cinema.rooms.list";
    pub const JOIN: &str = "cinema.rooms.join";
    pub const FAIL: &str = "cinema.rooms.fail";
    pub const CLEANUP: &str = "cinema.rooms.cleanup";
}

/// Requests to clip-selector.
pub mod clips {
    pub const GROUP: &str = "cinema.clips";
    pub const SEARCH: &str = "cinema.clips.search";
    pub const GET: &str = "cinema.clips.get";
    pub const FILMS: &str = "cinema.clips.films";
}

/// Requests to status-store.
pub mod status {
    pub const GROUP: &str = "cinema.status";
    pub const GET: &str = "cinema.status.get";
    pub const PURGE: &str = "cinema.status.purge";
}

/// `cinema.pi.{pi}`: the request group of one Pi's spawner.
pub fn pi_group(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}")
}

/// `cinema.pi.{pi}.spawn`.
pub fn pi_spawn(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}.spawn")
}

/// `cinema.pi.{pi}.stop`.
pub fn pi_stop(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}.stop")
}

/// `cinema.pi.{pi}.devices`: the Pi's capture devices (request).
pub fn pi_devices(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}.devices")
}

/// `cinema.pi.{pi}.audio_input`: choose the Pi's audio input (request).
pub fn pi_audio_input(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}.audio_input")
}

/// `cinema.pi.{pi}.audio_input_changed`: the Pi's clients switch (core event).
pub fn pi_audio_input_changed(pi_id: &str) -> String {
    format!("cinema.pi.{pi_id}.audio_input_changed")
}

/// Checks that an id may be used as one subject token: non-empty, at most 64
/// characters of `[A-Za-z0-9_-]` (so never `.`, `*`, `>` or whitespace).
pub fn check_id(kind: &'static str, id: &str) -> Result<(), Error> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId {
            kind,
            id: id.chars().take(80).collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_and_parses_session_subjects() {
        for event in SessionEvent::ALL {
            let s = session("abc-1", event);
            assert_eq!(parse_session(&s), Some(("abc-1", event)));
        }
        assert_eq!(session("s", SessionEvent::Play), "cinema.session.s.play");
        assert_eq!(parse_session("cinema.session.s.utterance"), None);
        assert_eq!(parse_session("cinema.rooms.create"), None);
        assert_eq!(parse_utterance(&utterance("abc-1")), Some("abc-1"));
        assert_eq!(parse_utterance("cinema.session..utterance"), None);
        assert_eq!(parse_utterance("cinema.session.a.b.utterance"), None);
        assert_eq!(parse_utterance("cinema.session.a.transcript"), None);
        assert_eq!(parse_audio(&audio("s-1")), Some("s-1"));
        assert_eq!(parse_audio("cinema.session.a.b.audio"), None);
        assert_eq!(parse_audio("cinema.session.s.play"), None);
    }

    #[test]
    fn ids_are_single_tokens() {
        for good in ["a", "pi-1", "A_b-9", &"x".repeat(64)] {
            assert!(check_id("id", good).is_ok(), "{good}");
        }
        for bad in ["", "a.b", "*", ">", "a b", "é", &"x".repeat(65)] {
            assert!(check_id("id", bad).is_err(), "{bad}");
        }
    }
}
