//! How big and how old each stream and bucket may grow, so a hub left
//! running for months keeps its disk: [`Bus::ensure_topology`](crate::Bus)
//! creates them with these and brings older ones to them. The oldest
//! messages go first once a stream is full (`discard: old`).

use std::time::Duration;

use crate::names;

const KIB: i32 = 1024;
const MIB: i64 = 1024 * 1024;
const DAY: Duration = Duration::from_secs(24 * 3600);

/// One stream's (or bucket's) bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All its messages together, in bytes.
    pub max_bytes: i64,
    /// A message (for a bucket: a key's latest value) older than this goes;
    /// zero keeps it until it is deleted.
    pub max_age: Duration,
    /// The largest message (value), in bytes.
    pub max_message_size: i32,
}

/// The bounds of a stream or bucket by its name (`CINEMA_EVENTS`,
/// `cinema-sessions`, …).
pub fn of(name: &str) -> Limits {
    let (max_bytes, max_age, max_message_size) = match name {
        // Every session event for a week (status-store and the dashboard
        // read back at most a session's worth).
        names::EVENTS_STREAM => (1024 * MIB, 7 * DAY, 1024 * KIB),
        // Work waiting for stt: an hour is long past any visitor's patience.
        // A message is at most the server's largest payload (an utterance
        // of 30 s is 960 KB).
        names::UTTERANCES_STREAM => (512 * MIB, Duration::from_secs(3600), 1024 * KIB),
        // Sessions, records and directors' state outlive a session by the
        // cleanup's retention (a day by default); a month is the backstop.
        names::SESSIONS_BUCKET => (64 * MIB, 30 * DAY, 64 * KIB),
        names::STATUS_BUCKET => (256 * MIB, 30 * DAY, 1024 * KIB),
        names::CONVERSATIONS_BUCKET => (256 * MIB, 30 * DAY, 1024 * KIB),
        // A Pi's presence lives while it beats.
        names::PIS_BUCKET => (8 * MIB, Duration::from_secs(120), 64 * KIB),
        // The signing key is written once and must not age away: live
        // sessions' tokens are signed with it. Bounded in size only.
        names::SECRETS_BUCKET => (MIB, Duration::ZERO, 64 * KIB),
        _ => (256 * MIB, 30 * DAY, 1024 * KIB),
    };
    Limits {
        max_bytes,
        max_age,
        max_message_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_and_bucket_is_bounded() {
        for name in [names::EVENTS_STREAM, names::UTTERANCES_STREAM]
            .into_iter()
            .chain(names::BUCKETS)
        {
            let l = of(name);
            assert!(l.max_bytes > 0 && l.max_message_size > 0, "{name}");
            assert!(
                !l.max_age.is_zero() || name == names::SECRETS_BUCKET,
                "{name} has no age"
            );
            assert!(l.max_message_size as i64 <= l.max_bytes, "{name}");
        }
    }
}
