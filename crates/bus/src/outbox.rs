//! An ordered outbox of durable publishes: the sender never waits, and a
//! message outlives a link that is down for a while (a Pi's leaf link cut
//! for a minute). Each message is tried, in the order sent, until its
//! stream acknowledges it or its patience runs out; retries carry the same
//! message id, so the stream keeps one copy however often it was sent.

use std::time::Duration;

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Name;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::{Bus, encode, names};

/// How long an outbox message is tried: under the streams' two-minute
/// duplicate window, so that a retry is never stored twice.
pub const OUTBOX_PATIENCE: Duration = Duration::from_secs(100);

struct Item {
    subject: String,
    headers: HeaderMap,
    payload: Bytes,
    /// Given up after this.
    deadline: Instant,
}

/// See the module's documentation. [`Outbox::sender`] hands out senders
/// for other tasks; the queue lives until the outbox and every sender are
/// gone.
pub struct Outbox {
    sender: OutboxSender,
    task: JoinHandle<()>,
}

/// A handle that queues messages into an [`Outbox`].
#[derive(Clone)]
pub struct OutboxSender {
    tx: mpsc::UnboundedSender<Item>,
    patience: Duration,
}

impl Outbox {
    /// Starts the outbox's publisher; each message is tried for `patience`
    /// from when it is sent.
    pub fn start(bus: Bus, patience: Duration) -> Outbox {
        let (tx, mut rx) = mpsc::unbounded_channel::<Item>();
        let task = tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                let left = item.deadline.saturating_duration_since(Instant::now());
                if let Err(e) = bus
                    .publish_durable_encoded(item.subject.clone(), item.headers, item.payload, left)
                    .await
                {
                    tracing::warn!(
                        subject = %item.subject,
                        error = %e,
                        "A message was given up: its stream did not take it in time."
                    );
                }
            }
        });
        Outbox {
            sender: OutboxSender { tx, patience },
            task,
        }
    }

    /// A sender into this outbox, for another task.
    pub fn sender(&self) -> OutboxSender {
        self.sender.clone()
    }

    /// Queues a message for its stream, with its de-duplicating id.
    pub fn send<M: prost::Message + Name>(&self, subject: String, msg: &M, msg_id: &str) {
        self.sender.send(subject, msg, msg_id);
    }

    /// Closes this outbox's own sender and waits up to `within` for what
    /// the queue holds to be published (a process on its way out; other
    /// senders should be dropped first).
    pub async fn settle(self, within: Duration) {
        let Outbox { sender, mut task } = self;
        drop(sender);
        if tokio::time::timeout(within, &mut task).await.is_err() {
            task.abort();
            tracing::warn!("The outbox still held messages when the process left.");
        }
    }
}

impl OutboxSender {
    /// Queues a message for its stream, with its de-duplicating id.
    pub fn send<M: prost::Message + Name>(&self, subject: String, msg: &M, msg_id: &str) {
        let (mut headers, payload) = encode(msg);
        headers.insert(names::MSG_ID_HEADER, msg_id);
        let item = Item {
            subject,
            headers,
            payload,
            deadline: Instant::now() + self.patience,
        };
        if self.tx.send(item).is_err() {
            tracing::warn!("The outbox is closed; a message was dropped.");
        }
    }
}
