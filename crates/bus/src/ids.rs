//! The message ids (`Nats-Msg-Id`) that make durable publishes idempotent,
//! and the command ids they derive from: each format is written here once.
//! The same fact published twice must get the same id, and two different
//! facts never one id; the streams keep one copy of an id within their
//! duplicate window.

use wire::v1::{ClientIssueKind, PlaybackState};

/// The greeting's play command of a session: one per session.
pub fn greeting_command(session_id: &str) -> String {
    format!("greet-{session_id}")
}

/// The play command that invites a quiet visitor back, once per turn.
pub fn invite_command(session_id: &str, turn: u32) -> String {
    format!("invite-{session_id}-{turn}")
}

/// The play command that says goodbye to a gone visitor, once per session.
pub fn goodbye_command(session_id: &str) -> String {
    format!("goodbye-{session_id}")
}

/// The play command that answers one utterance (or typed line).
pub fn turn_command(session_id: &str, utterance_id: &str) -> String {
    format!("turn-{session_id}-{utterance_id}")
}

/// The play command itself: its command id.
pub fn play(command_id: &str) -> String {
    command_id.to_string()
}

/// The record that a play command's clip was chosen (`ClipPlayed`).
pub fn clip_played(command_id: &str) -> String {
    format!("{command_id}-played")
}

/// One state of one play command's playback.
pub fn playback(command_id: &str, state: PlaybackState) -> String {
    format!("playback-{command_id}-{}", state.as_str_name())
}

/// The transcript of one utterance (or typed line).
pub fn transcript(utterance_id: &str) -> String {
    format!("transcript-{utterance_id}")
}

/// An utterance: its own id.
pub fn utterance(utterance_id: &str) -> String {
    utterance_id.to_string()
}

/// An operator's status line (`POST /update-status`).
pub fn status_update(update_id: &str) -> String {
    format!("status-{update_id}")
}

/// A session made.
pub fn created(session_id: &str) -> String {
    format!("created-{session_id}")
}

/// A client joined a session (its process id: a restarted client joins
/// again).
pub fn joined(session_id: &str, pid: u32) -> String {
    format!("joined-{session_id}-{pid}")
}

/// A session ended.
pub fn ended(session_id: &str) -> String {
    format!("ended-{session_id}")
}

/// What happened to a session's client, after `restarts` restarts.
pub fn client_issue(session_id: &str, restarts: u32, kind: ClientIssueKind) -> String {
    format!("client-{session_id}-{restarts}-{}", kind.as_str_name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_of_different_facts_differ() {
        let all = [
            greeting_command("s1"),
            turn_command("s1", "u1"),
            clip_played(&turn_command("s1", "u1")),
            playback("c1", PlaybackState::Started),
            playback("c1", PlaybackState::Finished),
            transcript("u1"),
            status_update("u1"),
            created("s1"),
            joined("s1", 7),
            joined("s1", 8),
            ended("s1"),
        ];
        let unique: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        assert_eq!(turn_command("s1", "u1"), turn_command("s1", "u1"));
    }
}
