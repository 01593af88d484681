//! The ordering invariant: a session's events (its join, its transcripts)
//! are decided one at a time, in stream order, whichever replica holds
//! them. Each replica handles a session's events in order on one task
//! (`sessions`); across replicas, an event waits until the session's state
//! says every earlier event of the session was handled (`last_seq`), or no
//! unhandled event comes before it in the stream. After `order_wait_ms` it
//! goes ahead anyway, so an event lost elsewhere cannot stall a session for
//! good.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bus::async_nats::jetstream::AckKind;
use bus::async_nats::jetstream::Message;
use bus::async_nats::jetstream::stream::RawMessageErrorKind;
use bus::subjects::{self, SessionEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::director::Director;
use crate::sessions::{Job, Turn};

/// Whether the event at stream sequence `seq` may be decided now: the
/// session's events are handled up to `handled` (its state's `last_seq`),
/// and the earliest event of the session after that is at `first_pending`
/// (none: nothing waits).
pub(crate) fn is_my_turn(handled: u64, first_pending: Option<u64>, seq: u64) -> bool {
    handled >= seq || first_pending.is_none_or(|first| first >= seq)
}

impl Director {
    /// The stream sequence of the earliest event of `sid` this director
    /// handles (joined, transcript) after `after`, if any.
    pub(crate) async fn next_pending(
        &self,
        sid: &str,
        after: u64,
    ) -> Result<Option<u64>, bus::Error> {
        let mut first: Option<u64> = None;
        for event in [SessionEvent::Joined, SessionEvent::Transcript] {
            match self
                .events
                .get_first_raw_message_by_subject(subjects::session(sid, event), after + 1)
                .await
            {
                Ok(m) => first = Some(first.map_or(m.sequence, |f| f.min(m.sequence))),
                Err(e) if e.kind() == RawMessageErrorKind::NoMessageFound => {}
                Err(e) => return Err(bus::Error::nats("events stream", e)),
            }
        }
        Ok(first)
    }

    /// Waits until every earlier event of the session is handled (by any
    /// replica), keeping this one from being redelivered meanwhile. Events
    /// of the session that arrive meanwhile go to `held`; one earlier than
    /// this one ends the wait ([`Turn::Earlier`]): it was redelivered here,
    /// and waiting for it would wait for ourselves. After `order_wait_ms`
    /// it goes ahead anyway, so an event lost elsewhere cannot stall a
    /// session for good.
    pub(crate) async fn wait_for_turn(
        &self,
        sid: &str,
        seq: u64,
        msg: &Message,
        arrivals: &mut mpsc::UnboundedReceiver<Job>,
        held: &mut BTreeMap<u64, Job>,
        shutdown: &CancellationToken,
    ) -> Turn {
        let started = Instant::now();
        let mut last_progress = Instant::now();
        loop {
            let ready = match self.load(sid).await {
                Ok((st, _)) if st.last_seq >= seq => true,
                Ok((st, _)) => match self.next_pending(sid, st.last_seq).await {
                    Ok(first) => is_my_turn(st.last_seq, first, seq),
                    Err(e) => {
                        tracing::warn!(session = %sid, error = %e, "Cannot read the session's events.");
                        false
                    }
                },
                Err(e) => {
                    tracing::warn!(session = %sid, error = %e, "Cannot read the session's state.");
                    false
                }
            };
            if ready {
                return Turn::Go;
            }
            if held
                .first_key_value()
                .is_some_and(|(first, _)| *first < seq)
            {
                return Turn::Earlier;
            }
            if started.elapsed() > Duration::from_millis(self.config.order_wait_ms) {
                tracing::warn!(session = %sid, seq, "An earlier event was never handled; going ahead.");
                return Turn::Go;
            }
            if last_progress.elapsed() > Duration::from_secs(5) {
                let _ = msg.ack_with(AckKind::Progress).await;
                last_progress = Instant::now();
            }
            tokio::select! {
                () = shutdown.cancelled() => return Turn::Stop,
                () = tokio::time::sleep(Duration::from_millis(20)) => {}
                Some(job) = arrivals.recv() => {
                    let at = job.msg.info().map(|i| i.stream_sequence).unwrap_or(0);
                    held.insert(at, job);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_waits_for_every_earlier_event_of_its_session() {
        // (handled up to, first unhandled, this event) → may go now
        let table = [
            (10, None, 11, true),      // nothing before it
            (10, Some(11), 11, true),  // it is the first unhandled one
            (10, Some(11), 12, false), // 11 is still being decided elsewhere
            (12, Some(13), 12, true),  // already handled (a redelivery)
            (12, None, 5, true),       // an old redelivery
            (0, Some(3), 7, false),    // a new session's join not yet greeted
            (0, Some(7), 7, true),
        ];
        for (handled, first, seq, ok) in table {
            assert_eq!(
                is_my_turn(handled, first, seq),
                ok,
                "handled {handled}, first pending {first:?}, event {seq}"
            );
        }
    }
}
