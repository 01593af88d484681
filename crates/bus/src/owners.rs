//! Which Pi a session belongs to, for the services that take a Pi's word:
//! stt (utterances), status-store (playback and client reports) and
//! room-manager (liveness). NATS lets a Pi publish under its own prefix
//! only, for any session id; a session id under another Pi's prefix than
//! the one room-manager assigned it is refused, so a Pi speaks only into
//! its own sessions.
//!
//! Read from room-manager's sessions bucket; a session's Pi never changes,
//! so an answer is kept (at most [`CAPACITY`] of them).

use std::collections::HashMap;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use tokio::sync::OnceCell;
use wire::v1::Session;

use crate::{Bus, Result, kv_get, names};

/// Answers kept before the cache starts over.
pub const CAPACITY: usize = 10_000;

/// Whether a Pi may speak for a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The session is this Pi's.
    Owner,
    /// The session is another Pi's (named).
    Other(String),
    /// No such session.
    Unknown,
}

impl Verdict {
    /// Why a message from `pi` for `sid` is refused (`None`: it is not).
    pub fn refusal(&self, pi: &str, sid: &str) -> Option<String> {
        match self {
            Verdict::Owner => None,
            Verdict::Other(owner) => Some(format!(
                "Pi {pi:?} spoke for session {sid}, which is Pi {owner:?}'s"
            )),
            Verdict::Unknown => Some(format!(
                "Pi {pi:?} spoke for session {sid}, which does not exist"
            )),
        }
    }
}

pub struct Owners {
    bus: Bus,
    sessions: OnceCell<kv::Store>,
    known: Mutex<HashMap<String, String>>,
}

impl Owners {
    pub fn new(bus: Bus) -> Owners {
        Owners {
            bus,
            sessions: OnceCell::new(),
            known: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `pi` may speak for `sid`. An error is the bus's (try again
    /// later), never a verdict.
    pub async fn check(&self, pi: &str, sid: &str) -> Result<Verdict> {
        let cached = self
            .known
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(sid)
            .cloned();
        let owner = match cached {
            Some(owner) => owner,
            None => {
                let store = self
                    .sessions
                    .get_or_try_init(|| self.bus.kv(names::SESSIONS_BUCKET))
                    .await?;
                let Some((session, _)) = kv_get::<Session>(store, sid).await? else {
                    return Ok(Verdict::Unknown);
                };
                let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
                if known.len() >= CAPACITY {
                    known.clear();
                }
                known.insert(sid.to_string(), session.pi_id.clone());
                session.pi_id
            }
        };
        Ok(if owner == pi {
            Verdict::Owner
        } else {
            Verdict::Other(owner)
        })
    }
}
