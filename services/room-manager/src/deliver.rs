//! Play commands to the Pis, kept until taken. A service publishes a play
//! command into the events stream (`cinema.pi.{pi}.session.{sid}.play`,
//! with its command id as message id: published twice, stored once).
//! room-manager reads them with a durable consumer and hands each to its Pi
//! as a request (`…deliver`), tried again until the Pi answers that it has
//! it. A command that cannot be handed over before its bound
//! (`play_expiry_ms` after it was made), whose session ended, or that a
//! later command of the same session overtook, is reported as a playback
//! that expired, with the reason: never lost in silence. The Pi plays each
//! command id once, however often it is handed over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::async_nats::jetstream::Message;
use bus::async_nats::jetstream::consumer::pull::Stream;
use bus::endpoints;
use bus::subjects::{self, SessionEvent};
use tokio_util::sync::CancellationToken;
use wire::now_ms;
use wire::v1::{PlayCommand, PlayDelivery, PlaybackEvent, PlaybackState};

use crate::{Rooms, is_live};

/// How long one hand-over waits for the Pi's answer.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The first pause between two tries, doubled after each until
/// [`MOST_BETWEEN`].
const FIRST_BETWEEN: Duration = Duration::from_millis(100);
/// The longest pause between two tries.
const MOST_BETWEEN: Duration = Duration::from_secs(1);

/// The pause after `tries` failed hand-overs (1, 2, …): 0.1 s, 0.2 s,
/// 0.4 s, 0.8 s, then 1 s.
fn pause_after(tries: u32) -> Duration {
    let doubled = FIRST_BETWEEN.saturating_mul(1u32 << tries.saturating_sub(1).min(16));
    doubled.min(MOST_BETWEEN)
}

/// The moment a command expires: `expiry` after it was made.
fn bound_ms(made_ms: i64, expiry: Duration) -> i64 {
    made_ms.saturating_add(i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX))
}

/// The newest play command per session, as read: its stream sequence and
/// command id (the same command published twice is not a later one).
type Newest = Arc<Mutex<HashMap<String, (u64, String)>>>;

/// The play commands, as room-manager's durable consumer reads them.
pub(crate) async fn consume(rooms: &Rooms) -> Result<Stream, bus::Error> {
    let expiry = Duration::from_millis(rooms.config.play_expiry_ms);
    let consumer = rooms.bus.consumer(&bus::consumers::plays(expiry)).await?;
    consumer
        .messages()
        .await
        .map_err(|e| bus::Error::nats("consume", e))
}

/// Hands each play command to its Pi until shutdown.
pub(crate) async fn run(rooms: Rooms, mut messages: Stream, shutdown: CancellationToken) {
    let expiry = Duration::from_millis(rooms.config.play_expiry_ms);
    let newest: Newest = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(msg) = bus::next_or_shutdown(&mut messages, &shutdown, "play commands").await {
        let Some((Some(pi), sid, SessionEvent::Play)) = subjects::parse_session_from(&msg.subject)
        else {
            let _ = msg.ack().await;
            continue;
        };
        let (pi, sid) = (pi.to_string(), sid.to_string());
        // A browser session's page hears its commands itself (the gateway).
        if pi == subjects::BROWSER {
            let _ = msg.ack().await;
            continue;
        }
        let cmd = match bus::decode::<PlayCommand>(msg.headers.as_ref(), &msg.payload) {
            Ok(c) if c.session_id == sid => c,
            Ok(c) => {
                let why = format!(
                    "a play command for session {} on {}",
                    c.session_id, msg.subject
                );
                tracing::warn!(%why, "Refused a play command.");
                let _ = bus::term(rooms.bus.client(), &msg, &why).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(subject = %msg.subject, error = %e, "Refused a malformed play command.");
                let _ = bus::term(rooms.bus.client(), &msg, &e.to_string()).await;
                continue;
            }
        };
        let seq = msg.info().map(|i| i.stream_sequence).unwrap_or(0);
        {
            let mut n = newest.lock().unwrap_or_else(|p| p.into_inner());
            let e = n.entry(sid.clone()).or_default();
            if seq >= e.0 {
                *e = (seq, cmd.command_id.clone());
            }
        }
        tasks.spawn(hand_over(
            rooms.clone(),
            newest.clone(),
            msg,
            Delivery {
                pi,
                sid,
                seq,
                cmd,
                expiry,
            },
            shutdown.clone(),
        ));
        while tasks.try_join_next().is_some() {}
    }
    // Unfinished hand-overs go back to the stream (not acknowledged).
    tasks.shutdown().await;
}

struct Delivery {
    pi: String,
    sid: String,
    seq: u64,
    cmd: PlayCommand,
    expiry: Duration,
}

/// Why a command was not handed over.
enum Outcome {
    Taken,
    Expired(String),
}

async fn hand_over(
    rooms: Rooms,
    newest: Newest,
    msg: Message,
    d: Delivery,
    shutdown: CancellationToken,
) {
    let made_ms = if d.cmd.at_ms > 0 {
        d.cmd.at_ms
    } else {
        msg.info()
            .map(|i| (i.published.unix_timestamp_nanos() / 1_000_000) as i64)
            .unwrap_or_else(|_| now_ms())
    };
    let bound_ms = bound_ms(made_ms, d.expiry);
    let endpoint = endpoints::pi_delivery(&d.pi, &d.sid);
    let delivery = PlayDelivery {
        command: Some(d.cmd.clone()),
        expires_at_ms: bound_ms,
    };
    let mut tries = 0u32;
    let outcome = loop {
        let overtaken = newest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&d.sid)
            .is_some_and(|(seq, command)| *seq > d.seq && *command != d.cmd.command_id);
        if overtaken {
            break Outcome::Expired("a later play command for the session came first".into());
        }
        match rooms.load(&d.sid).await {
            Ok((s, _)) if !is_live(s.state()) => {
                break Outcome::Expired("the session ended before the Pi took it".into());
            }
            Err(e) if e.code == 404 => {
                break Outcome::Expired("the session ended before the Pi took it".into());
            }
            _ => {}
        }
        tries += 1;
        let answer = rooms
            .bus
            .request_with_timeout(&endpoint, &delivery, ANSWER_WITHIN)
            .await;
        match answer {
            Ok(a) if a.expired => {
                break Outcome::Expired(format!(
                    "the Pi {} took it after its bound ({} s)",
                    d.pi,
                    d.expiry.as_secs_f64()
                ));
            }
            Ok(a) => {
                if tries > 1 || a.duplicate {
                    tracing::info!(pi = %d.pi, session = %d.sid, command = %d.cmd.command_id, tries, duplicate = a.duplicate, "The Pi took a play command.");
                }
                break Outcome::Taken;
            }
            Err(e) => {
                if now_ms() >= bound_ms {
                    break Outcome::Expired(format!(
                        "the Pi {} did not take it within {} s ({e})",
                        d.pi,
                        d.expiry.as_secs_f64()
                    ));
                }
                if tries == 1 {
                    tracing::warn!(pi = %d.pi, session = %d.sid, command = %d.cmd.command_id, error = %e, "The Pi did not take a play command; trying again.");
                }
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(pause_after(tries)) => {}
                }
            }
        }
    };
    if let Outcome::Expired(why) = outcome {
        tracing::warn!(pi = %d.pi, session = %d.sid, command = %d.cmd.command_id, %why, "A play command expired.");
        let ev = PlaybackEvent {
            session_id: d.sid.clone(),
            command_id: d.cmd.command_id.clone(),
            clip_id: d.cmd.clip_id.clone(),
            state: PlaybackState::Expired as i32,
            error: why,
            at_ms: now_ms(),
            ..Default::default()
        };
        let id = bus::ids::playback(&d.cmd.command_id, PlaybackState::Expired);
        if let Err(e) = rooms
            .bus
            .publish_durable(
                subjects::pi_session(&d.pi, &d.sid, SessionEvent::Playback),
                &ev,
                &id,
            )
            .await
        {
            // Not acknowledged: it comes back and is reported then.
            tracing::warn!(error = %e, "Cannot report an expired play command.");
            return;
        }
    }
    let _ = msg.double_ack().await;
    // Forget the session once its newest command is done.
    let mut n = newest.lock().unwrap_or_else(|p| p.into_inner());
    if n.get(&d.sid).is_some_and(|(seq, _)| *seq == d.seq) {
        n.remove(&d.sid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_double_from_a_tenth_of_a_second_to_one_second() {
        let table = [
            (1, 100),
            (2, 200),
            (3, 400),
            (4, 800),
            (5, 1000),
            (6, 1000),
            (40, 1000),
            (u32::MAX, 1000),
        ];
        for (tries, ms) in table {
            assert_eq!(
                pause_after(tries),
                Duration::from_millis(ms),
                "after {tries} tries"
            );
        }
    }

    #[test]
    fn a_command_expires_its_bound_after_it_was_made() {
        let table = [
            (1_000, 30_000, 31_000),
            (0, 0, 0),
            (i64::MAX - 5, 30_000, i64::MAX),
        ];
        for (made, expiry_ms, bound) in table {
            assert_eq!(bound_ms(made, Duration::from_millis(expiry_ms)), bound);
        }
    }
}
