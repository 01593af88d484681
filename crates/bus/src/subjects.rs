//! Subject builders. Session facts live under `cinema.session.{sid}.{event}`;
//! what crosses the Pi boundary lives under the Pi's own prefix,
//! `cinema.pi.{pi}.session.{sid}.{event}`, so NATS permissions can confine a
//! Pi to its own traffic (see `nats/hub.conf`). Requests go to
//! `cinema.{service}.{verb}`.

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

    /// True for the events that travel to or from one Pi and therefore live
    /// under its prefix: joined (its spawner watches it), play (its command),
    /// playback and client (what it reports).
    pub fn on_pi(self) -> bool {
        matches!(
            self,
            Self::Joined | Self::Play | Self::Playback | Self::Client
        )
    }

    /// This event of every session: `cinema.session.*.{event}`, or
    /// `cinema.pi.*.session.*.{event}` for a Pi's events.
    pub fn wildcard(self) -> String {
        if self.on_pi() {
            format!("cinema.pi.*.session.*.{}", self.token())
        } else {
            format!("cinema.session.*.{}", self.token())
        }
    }
}

/// One session's event. For a Pi's events (see [`SessionEvent::on_pi`]) this
/// is a filter over every Pi, `cinema.pi.*.session.{sid}.{event}`: subscribe
/// with it; publish with [`pi_session`].
pub fn session(session_id: &str, event: SessionEvent) -> String {
    if event.on_pi() {
        format!("cinema.pi.*.session.{session_id}.{}", event.token())
    } else {
        format!("cinema.session.{session_id}.{}", event.token())
    }
}

/// The `{pi}` of a browser session's subjects (`cinema.pi.browser.session.{sid}.*`):
/// its TV is a web page and the dashboard-gateway its client. No Pi may take
/// this id (see [`check_pi_id`]).
pub const BROWSER: &str = "browser";

/// Checks a Pi's id: a subject token ([`check_id`]) other than [`BROWSER`].
pub fn check_pi_id(kind: &'static str, id: &str) -> Result<(), Error> {
    check_id(kind, id)?;
    if id == BROWSER {
        return Err(Error::InvalidId {
            kind,
            id: format!("{id} (reserved for browser sessions)"),
        });
    }
    Ok(())
}

/// `cinema.pi.{pi}.session.{sid}.{event}`: where a Pi's events are published.
pub fn pi_session(pi_id: &str, session_id: &str, event: SessionEvent) -> String {
    format!("cinema.pi.{pi_id}.session.{session_id}.{}", event.token())
}

/// `cinema.pi.{pi}.session.{sid}.deliver`: a play command handed to the
/// Pi by room-manager, as a request the Pi answers once it has it (core
/// NATS, not in a stream; the command itself is kept in the events stream
/// under `…play` until it is delivered or expires).
pub fn pi_delivery(pi_id: &str, session_id: &str) -> String {
    format!("cinema.pi.{pi_id}.session.{session_id}.deliver")
}

/// Every Pi's deliveries.
pub const DELIVERY_WILDCARD: &str = "cinema.pi.*.session.*.deliver";

/// `cinema.pi.{pi}.session.{sid}.utterance` (work-queue stream).
pub fn utterance(pi_id: &str, session_id: &str) -> String {
    format!("cinema.pi.{pi_id}.session.{session_id}.utterance")
}

pub const UTTERANCE_WILDCARD: &str = "cinema.pi.*.session.*.utterance";

/// The session id of an utterance subject.
pub fn parse_utterance(subject: &str) -> Option<&str> {
    match parse_pi_subject(subject)? {
        (_, sid, "utterance") => Some(sid),
        _ => None,
    }
}

/// The Pi and session of an utterance subject.
pub fn parse_utterance_from(subject: &str) -> Option<(&str, &str)> {
    match parse_pi_subject(subject)? {
        (pi, sid, "utterance") => Some((pi, sid)),
        _ => None,
    }
}

/// `cinema.pi.{pi}.session.{sid}.audio` (core NATS only).
pub fn audio(pi_id: &str, session_id: &str) -> String {
    format!("cinema.pi.{pi_id}.session.{session_id}.audio")
}

/// One session's audio frames, from whichever Pi: `cinema.pi.*.session.{sid}.audio`.
pub fn session_audio(session_id: &str) -> String {
    format!("cinema.pi.*.session.{session_id}.audio")
}

/// The audio frames of every session.
pub const AUDIO_WILDCARD: &str = "cinema.pi.*.session.*.audio";

/// Everything Cinema Chat says on the bus.
pub const EVERYTHING: &str = "cinema.>";

/// Everything said about every session: its events, commands, utterances
/// and audio frames (the session's own subjects and its Pi's). Utterances
/// carry what a visitor said: a service watches [`event_wildcards`] instead.
pub const SESSION_WILDCARDS: [&str; 2] = ["cinema.session.>", "cinema.pi.*.session.>"];

/// Every session event of every session, and nothing else: the session's
/// own subjects and its Pi's events (joined, play, playback, client), never
/// its utterances, audio frames or deliveries. What the gateway's relay and
/// room-manager's liveness watch hear.
pub fn event_wildcards() -> Vec<String> {
    std::iter::once("cinema.session.>".to_string())
        .chain(
            SessionEvent::ALL
                .into_iter()
                .filter(|e| e.on_pi())
                .map(SessionEvent::wildcard),
        )
        .collect()
}

/// The session id of an audio frame subject.
pub fn parse_audio(subject: &str) -> Option<&str> {
    match parse_pi_subject(subject)? {
        (_, sid, "audio") => Some(sid),
        _ => None,
    }
}

/// `cinema.pi.{pi}.session.{sid}.{last}` → (pi, sid, last).
fn parse_pi_subject(subject: &str) -> Option<(&str, &str, &str)> {
    let rest = subject.strip_prefix("cinema.pi.")?;
    let mut tokens = rest.split('.');
    let (pi, session, sid, last) = (
        tokens.next()?,
        tokens.next()?,
        tokens.next()?,
        tokens.next()?,
    );
    let ok = tokens.next().is_none() && session == "session" && !pi.is_empty() && !sid.is_empty();
    ok.then_some((pi, sid, last))
}

/// Splits a session event subject into its session id and event; a Pi's
/// events are recognised under its prefix only.
pub fn parse_session(subject: &str) -> Option<(&str, SessionEvent)> {
    parse_session_from(subject).map(|(_, sid, event)| (sid, event))
}

/// Like [`parse_session`], with the Pi the event came from or went to.
pub fn parse_session_from(subject: &str) -> Option<(Option<&str>, &str, SessionEvent)> {
    if let Some((pi, sid, token)) = parse_pi_subject(subject) {
        let event = SessionEvent::from_token(token).filter(|e| e.on_pi())?;
        return Some((Some(pi), sid, event));
    }
    let rest = subject.strip_prefix("cinema.session.")?;
    let (sid, token) = rest.split_once('.')?;
    let event = SessionEvent::from_token(token).filter(|e| !e.on_pi())?;
    (!sid.is_empty()).then_some((None, sid, event))
}

/// The session any subject of a session belongs to, whatever its last
/// token (events, commands, deliveries, utterances, audio):
/// `cinema.session.{sid}.…` or its Pi's `cinema.pi.{pi}.session.{sid}.…`.
pub fn session_of(subject: &str) -> Option<&str> {
    if let Some((_, sid, _)) = parse_pi_subject(subject) {
        return Some(sid);
    }
    let rest = subject.strip_prefix("cinema.session.")?;
    let (sid, last) = rest.split_once('.')?;
    (!sid.is_empty() && !last.is_empty() && !last.contains('.')).then_some(sid)
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
    /// Re-ingest the library folder now (answers with the ingest summary).
    pub const RELOAD: &str = "cinema.clips.reload";
}

/// Requests to the director (llm).
pub mod director {
    pub const GROUP: &str = "cinema.director";
    /// Speak to a quiet visitor (an invite, a goodbye).
    pub const NUDGE: &str = "cinema.director.nudge";
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

    use crate::permissions::tests::matches;

    #[test]
    fn event_wildcards_hear_every_event_and_no_voice() {
        let heard = |subject: &str| event_wildcards().iter().any(|w| matches(w, subject));
        for event in SessionEvent::ALL {
            assert!(heard(&session("s1", event)), "{event:?}");
            assert!(
                heard(&pi_session("pi-1", "s1", event)) || !event.on_pi(),
                "{event:?}"
            );
        }
        for private in [
            utterance("pi-1", "s1"),
            audio("pi-1", "s1"),
            pi_delivery("pi-1", "s1"),
        ] {
            assert!(!heard(&private), "{private}");
        }
        // The broad wildcards did hear them.
        assert!(
            SESSION_WILDCARDS
                .iter()
                .any(|w| matches(w, &utterance("pi-1", "s1")))
        );
    }

    #[test]
    fn builds_and_parses_session_subjects() {
        for event in SessionEvent::ALL {
            let s = if event.on_pi() {
                pi_session("pi-1", "abc-1", event)
            } else {
                session("abc-1", event)
            };
            assert_eq!(parse_session(&s), Some(("abc-1", event)), "{s}");
            // Each event has one home: the other form is not it.
            let other = if event.on_pi() {
                format!("cinema.session.abc-1.{}", event.token())
            } else {
                format!("cinema.pi.pi-1.session.abc-1.{}", event.token())
            };
            assert_eq!(parse_session(&other), None, "{other}");
        }
        assert_eq!(session("s", SessionEvent::Ended), "cinema.session.s.ended");
        assert_eq!(
            session("s", SessionEvent::Play),
            "cinema.pi.*.session.s.play"
        );
        assert_eq!(
            pi_session("p", "s", SessionEvent::Play),
            "cinema.pi.p.session.s.play"
        );
        assert_eq!(
            parse_session_from("cinema.pi.p.session.s.playback"),
            Some((Some("p"), "s", SessionEvent::Playback))
        );
        assert_eq!(
            SessionEvent::Playback.wildcard(),
            "cinema.pi.*.session.*.playback"
        );
        assert_eq!(parse_session(&utterance("p", "s")), None);
        assert_eq!(parse_session("cinema.rooms.create"), None);
        assert_eq!(parse_session("cinema.pi.p.session.s.play.x"), None);
        assert_eq!(parse_session("cinema.pi.p.spawn"), None);
        assert_eq!(parse_utterance(&utterance("pi-1", "abc-1")), Some("abc-1"));
        assert_eq!(parse_utterance("cinema.pi.p.session..utterance"), None);
        assert_eq!(parse_utterance("cinema.pi.p.session.a.b.utterance"), None);
        assert_eq!(parse_utterance("cinema.session.a.utterance"), None);
        assert_eq!(parse_audio(&audio("p", "s-1")), Some("s-1"));
        assert_eq!(parse_audio("cinema.pi.p.session.a.b.audio"), None);
        assert_eq!(parse_audio("cinema.pi.p.session.s.play"), None);
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
