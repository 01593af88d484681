//! The bus: the only crate that names NATS subjects, streams, consumers, KV
//! buckets and headers, with typed protobuf helpers around async-nats.
//!
//! Payloads are protobuf (`wire`), each tagged with its full type name in the
//! [`names::TYPE_HEADER`] header so a reader can tell a wrong message from a
//! corrupt one.

pub mod consumers;
pub mod endpoints;
pub mod ids;
pub mod limits;
pub mod names;
pub mod outbox;
pub mod owners;
pub mod permissions;
pub mod service;
pub mod subjects;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, consumer, kv, stream};
use async_nats::{HeaderMap, Message};
use bytes::Bytes;
use prost::Name;

pub use async_nats;
pub use endpoints::Endpoint;
pub use outbox::Outbox;

/// How long a request waits for its reply unless told otherwise.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Fixed reconnect delay: the default backoff grows to 4 s, too slow for a TV.
pub const RECONNECT_DELAY: Duration = Duration::from_millis(250);
/// How long a request that finds no responder is tried again (within its
/// timeout): a service whose NATS node just died is back on another node
/// within a reconnect or two, and a request sent meanwhile reached no one,
/// so sending it again cannot do anything twice.
pub const NO_RESPONDER_PATIENCE: Duration = Duration::from_secs(3);

static DECODE_ERRORS: AtomicU64 = AtomicU64::new(0);

/// How many payloads this process refused to decode (bad protobuf, wrong type).
pub fn decode_errors() -> u64 {
    DECODE_ERRORS.load(Ordering::Relaxed)
}

/// What went wrong on the bus. Callers match on the variant (the kind).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no service answers on {subject}")]
    NoResponders { subject: String },
    #[error("request on {subject} timed out")]
    Timeout { subject: String },
    #[error("cannot decode {type_name}: {reason}")]
    Decode { type_name: String, reason: String },
    #[error("expected a {expected} message, got {got}")]
    WrongType { expected: String, got: String },
    /// The service answered with an error (services API error headers).
    #[error("{message} (code {code})")]
    Remote { code: u16, message: String },
    #[error("invalid {kind} {id:?}: use 1-64 characters of A-Z, a-z, 0-9, '-' or '_'")]
    InvalidId { kind: &'static str, id: String },
    #[error("{0}")]
    Config(String),
    #[error("NATS {op} failed: {source}")]
    Nats {
        op: &'static str,
        #[source]
        source: async_nats::Error,
    },
}

impl Error {
    pub fn nats(op: &'static str, source: impl Into<async_nats::Error>) -> Self {
        Error::Nats {
            op,
            source: source.into(),
        }
    }

    /// Whether trying again later may succeed: nobody answered, the answer
    /// was late, the connection failed, or the service said it cannot
    /// answer now (5xx: still loading, a part of it down). A refusal of the
    /// request itself (4xx) or a message that cannot be read is final.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::NoResponders { .. } | Error::Timeout { .. } | Error::Nats { .. } => true,
            Error::Remote { code, .. } => *code >= 500,
            Error::Decode { .. }
            | Error::WrongType { .. }
            | Error::InvalidId { .. }
            | Error::Config(_) => false,
        }
    }

    /// The HTTP-like code of a remote error, if this is one.
    pub fn remote_code(&self) -> Option<u16> {
        match self {
            Error::Remote { code, .. } => Some(*code),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Encodes a message with its type header.
pub fn encode<M: prost::Message + Name>(msg: &M) -> (HeaderMap, Bytes) {
    let mut headers = HeaderMap::new();
    headers.insert(names::TYPE_HEADER, M::full_name().as_str());
    (headers, Bytes::from(msg.encode_to_vec()))
}

/// Decodes a payload as `M`, refusing a payload whose type header names
/// another message. Every refusal is counted and returned, never a panic.
pub fn decode<M: prost::Message + Name + Default>(
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<M> {
    if let Some(got) = headers.and_then(|h| h.get(names::TYPE_HEADER)) {
        let expected = M::full_name();
        if got.as_str() != expected {
            DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
            return Err(Error::WrongType {
                expected,
                got: got.as_str().chars().take(100).collect(),
            });
        }
    }
    M::decode(payload).map_err(|e| {
        DECODE_ERRORS.fetch_add(1, Ordering::Relaxed);
        Error::Decode {
            type_name: M::full_name(),
            reason: e.to_string(),
        }
    })
}

/// Decodes a core NATS message.
pub fn decode_message<M: prost::Message + Name + Default>(msg: &Message) -> Result<M> {
    decode(msg.headers.as_ref(), &msg.payload)
}

/// Tells the server never to redeliver a JetStream message, with a reason the
/// server puts in its `MSG_TERMINATED` advisory (`+TERM <reason>`).
pub async fn term(
    client: &async_nats::Client,
    msg: &jetstream::Message,
    reason: &str,
) -> Result<()> {
    let Some(reply) = msg.reply.clone() else {
        return Ok(());
    };
    // One line: the reason travels in the ack's payload.
    let reason: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    client
        .publish(reply, Bytes::from(format!("+TERM {reason}")))
        .await
        .map_err(|e| Error::nats("term", e))
}

/// How long a durable publish is tried again while its stream does not
/// answer (a new leader being elected after a node died).
pub const DURABLE_PATIENCE: Duration = Duration::from_secs(15);

/// How many copies of each stream and bucket the hub's NATS keeps:
/// `CINEMA_NATS_REPLICAS` (1 by default; 3 on a three-node cluster).
pub fn replicas() -> Result<usize> {
    let Some(value) = std::env::var("CINEMA_NATS_REPLICAS")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(1);
    };
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=5) => Ok(n),
        _ => Err(Error::Config(format!(
            "CINEMA_NATS_REPLICAS must be a number from 1 to 5 (JetStream's limit), not {value:?}"
        ))),
    }
}

/// Options of a named connection to `url` with its credentials: a user and
/// password in the URL (`nats://user:password@host`, percent-encoded; the
/// client library does not read them itself), else those of the
/// environment, which the NATS CLI reads too: `NATS_USER` +
/// `NATS_PASSWORD`, `NATS_CREDS` (a credentials file); `NATS_CA` (the CA
/// that signed the server's certificate; TLS is then required, as with a
/// `tls://` URL) and `NATS_INBOX_PREFIX` (replies to this connection arrive
/// under it: a Pi's permissions allow only its own).
pub async fn connect_options(name: &str, url: &str) -> Result<async_nats::ConnectOptions> {
    let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
    let mut options = async_nats::ConnectOptions::new().name(name);
    if let Some((user, password)) = url_credentials(url) {
        options = options.user_and_password(user, password);
    } else if let (Some(user), Some(password)) = (env("NATS_USER"), env("NATS_PASSWORD")) {
        options = options.user_and_password(user, password);
    }
    if let Some(path) = env("NATS_CREDS") {
        options = options.credentials_file(&path).await.map_err(|e| {
            Error::nats(
                "read NATS_CREDS",
                std::io::Error::other(format!("{path}: {e}")),
            )
        })?;
    }
    if let Some(path) = env("NATS_CA") {
        options = options.add_root_certificates(path.into()).require_tls(true);
    }
    if let Some(prefix) = env("NATS_INBOX_PREFIX") {
        options = options.custom_inbox_prefix(prefix);
    }
    Ok(options)
}

/// The servers of a NATS URL: one, or several separated by commas (a
/// cluster's nodes: `nats://user:pw@nats:4222,nats://nats-2:4222`), as the
/// client library takes them.
pub fn server_addrs(url: &str) -> Result<Vec<async_nats::ServerAddr>> {
    url.split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .enumerate()
        .map(|(i, u)| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| Error::Config(format!("server {} of the NATS URL: {e}", i + 1)))
        })
        .collect()
}

/// The user and password of the first server of a NATS URL, decoded.
pub fn url_credentials(url: &str) -> Option<(String, String)> {
    let first = url.split(',').next()?;
    let addr: async_nats::ServerAddr = first.trim().parse().ok()?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let user = addr.username()?;
    Some((decode(user), decode(addr.password().unwrap_or_default())))
}

/// Waits until the server has processed everything this client sent so far
/// (a subscription, say). `flush` only empties the client's buffer; this
/// sends a message to the client's own fresh inbox and waits for it to come
/// back, and the server handles one connection's operations in order.
pub async fn round_trip(client: &async_nats::Client, patience: Duration) -> Result<()> {
    let inbox = client.new_inbox();
    let mut echo = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::nats("subscribe", e))?;
    client
        .publish(inbox, Bytes::new())
        .await
        .map_err(|e| Error::nats("publish", e))?;
    match tokio::time::timeout(patience, futures::StreamExt::next(&mut echo)).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(Error::Config("the NATS connection closed".into())),
        Err(_) => Err(Error::Config(format!(
            "the NATS server did not answer within {} s",
            patience.as_secs()
        ))),
    }
}

/// A connection to the bus: the NATS client and its JetStream context.
#[derive(Clone, Debug)]
pub struct Bus {
    client: async_nats::Client,
    js: jetstream::Context,
}

impl Bus {
    /// Connects with a named connection, a fixed short reconnect delay, and
    /// retries of the first connection (so services may start before NATS);
    /// credentials and TLS as [`connect_options`] reads them.
    pub async fn connect(url: &str, name: &str) -> Result<Bus> {
        let client = connect_options(name, url)
            .await?
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .reconnect_delay_callback(|_| RECONNECT_DELAY)
            .connect(server_addrs(url)?)
            .await
            .map_err(|e| Error::nats("connect", e))?;
        // Behind a leaf server the hub's JetStream answers in its domain.
        let js = match std::env::var("NATS_JS_DOMAIN") {
            Ok(domain) if !domain.is_empty() => jetstream::with_domain(client.clone(), domain),
            _ => jetstream::new(client.clone()),
        };
        Ok(Bus { client, js })
    }

    pub fn new(client: async_nats::Client) -> Bus {
        let js = jetstream::new(client.clone());
        Bus { client, js }
    }

    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    pub fn jetstream(&self) -> &jetstream::Context {
        &self.js
    }

    /// Publishes on core NATS (not persisted).
    pub async fn publish<M: prost::Message + Name>(&self, subject: String, msg: &M) -> Result<()> {
        let (headers, payload) = encode(msg);
        self.client
            .publish_with_headers(subject, headers, payload)
            .await
            .map_err(|e| Error::nats("publish", e))
    }

    /// Publishes into a stream and waits for the server's ack. `msg_id`
    /// de-duplicates retries within the stream's duplicate window.
    pub async fn publish_durable<M: prost::Message + Name>(
        &self,
        subject: String,
        msg: &M,
        msg_id: &str,
    ) -> Result<()> {
        let (mut headers, payload) = encode(msg);
        headers.insert(names::MSG_ID_HEADER, msg_id);
        self.publish_durable_encoded(subject, headers, payload, DURABLE_PATIENCE)
            .await
    }

    /// [`Bus::publish_durable`] of an encoded message (its headers carry
    /// the message id), tried for up to `patience`: a stream between
    /// leaders (a cluster node just died) or a link that is down (a Pi's
    /// leaf) answers late or not at all, and the stream keeps one copy of a
    /// message id however often it is sent within its duplicate window.
    pub async fn publish_durable_encoded(
        &self,
        subject: String,
        headers: HeaderMap,
        payload: Bytes,
        patience: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            let tried = async {
                let ack = self
                    .js
                    .send_publish(
                        subject.clone(),
                        jetstream::message::PublishMessage::build()
                            .payload(payload.clone())
                            .headers(headers.clone()),
                    )
                    .await
                    .map_err(|e| Error::nats("publish", e))?;
                ack.await.map_err(|e| Error::nats("publish ack", e))
            }
            .await;
            match tried {
                Ok(_) => return Ok(()),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::debug!(subject, error = %e, "A durable publish is tried again.");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// Sends `endpoint` its request and decodes its reply (or the remote
    /// error).
    pub async fn request<Req, Resp>(
        &self,
        endpoint: &Endpoint<Req, Resp>,
        req: &Req,
    ) -> Result<Resp>
    where
        Req: prost::Message + Name,
        Resp: prost::Message + Name + Default,
    {
        self.request_with_timeout(endpoint, req, REQUEST_TIMEOUT)
            .await
    }

    /// [`Bus::request`] waiting at most `timeout` for the answer.
    pub async fn request_with_timeout<Req, Resp>(
        &self,
        endpoint: &Endpoint<Req, Resp>,
        req: &Req,
        timeout: Duration,
    ) -> Result<Resp>
    where
        Req: prost::Message + Name,
        Resp: prost::Message + Name + Default,
    {
        let subject = endpoint.subject().to_string();
        let (headers, payload) = encode(req);
        let started = tokio::time::Instant::now();
        let patience = NO_RESPONDER_PATIENCE.min(timeout);
        let reply = loop {
            let request = async_nats::Request::new()
                .payload(payload.clone())
                .headers(headers.clone())
                .timeout(Some(timeout.saturating_sub(started.elapsed())));
            match self.client.send_request(subject.clone(), request).await {
                Ok(reply) => break reply,
                Err(e)
                    if e.kind() == async_nats::RequestErrorKind::NoResponders
                        && started.elapsed() + Duration::from_millis(100) < patience =>
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(match e.kind() {
                        async_nats::RequestErrorKind::TimedOut => Error::Timeout {
                            subject: subject.clone(),
                        },
                        async_nats::RequestErrorKind::NoResponders => Error::NoResponders {
                            subject: subject.clone(),
                        },
                        _ => Error::nats("request", e),
                    });
                }
            }
        };
        if let Some(err) = service::remote_error(reply.headers.as_ref()) {
            return Err(err);
        }
        decode_message(&reply)
    }

    /// Creates the streams and buckets every service relies on, if missing,
    /// and keeps them within their [`limits`]. Idempotent: every service
    /// calls it at start-up. On a NATS cluster, `CINEMA_NATS_REPLICAS` (1 to
    /// 5) copies of each are kept.
    pub async fn ensure_topology(&self) -> Result<()> {
        let num_replicas = replicas()?;
        let events = limits::of(names::EVENTS_STREAM);
        self.js
            .create_or_update_stream(stream::Config {
                name: names::EVENTS_STREAM.into(),
                subjects: subjects::SessionEvent::ALL
                    .iter()
                    .map(|e| e.wildcard())
                    .collect(),
                max_age: events.max_age,
                max_bytes: events.max_bytes,
                max_message_size: events.max_message_size,
                discard: stream::DiscardPolicy::Old,
                duplicate_window: Duration::from_secs(120),
                num_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats("create events stream", e))?;
        let utterances = limits::of(names::UTTERANCES_STREAM);
        self.js
            .get_or_create_stream(stream::Config {
                name: names::UTTERANCES_STREAM.into(),
                subjects: vec![subjects::UTTERANCE_WILDCARD.into()],
                retention: stream::RetentionPolicy::WorkQueue,
                max_age: utterances.max_age,
                max_bytes: utterances.max_bytes,
                max_message_size: utterances.max_message_size,
                duplicate_window: Duration::from_secs(120),
                num_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats("create utterances stream", e))?;
        self.keep_config(names::UTTERANCES_STREAM).await?;
        // The status bucket is status-store's alone: it makes it
        // ([`Bus::ensure_status_bucket`]); other services may not.
        for bucket in [
            names::SESSIONS_BUCKET,
            names::CONVERSATIONS_BUCKET,
            names::PIS_BUCKET,
            names::SECRETS_BUCKET,
        ] {
            self.kv_or_create(bucket).await?;
        }
        Ok(())
    }

    /// Creates (or opens) the status bucket: only status-store writes it.
    pub async fn ensure_status_bucket(&self) -> Result<kv::Store> {
        self.kv_or_create(names::STATUS_BUCKET).await
    }

    /// Opens a bucket that the server side makes, waiting up to `patience`
    /// for it (a Pi may start before the services that create it).
    pub async fn kv_when_ready(&self, bucket: &str, patience: Duration) -> Result<kv::Store> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.kv(bucket).await {
                Ok(store) => return Ok(store),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(e) => {
                    tracing::info!(bucket, error = %e, "waiting for the bucket");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn kv_or_create(&self, bucket: &str) -> Result<kv::Store> {
        if let Ok(store) = self.js.get_key_value(bucket).await {
            self.keep_config(&format!("KV_{bucket}")).await?;
            return Ok(store);
        }
        let l = limits::of(bucket);
        self.js
            .create_key_value(kv::Config {
                bucket: bucket.into(),
                history: 1,
                max_age: l.max_age,
                max_bytes: l.max_bytes,
                max_value_size: l.max_message_size,
                num_replicas: replicas()?,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats("create bucket", e))
    }

    /// A stream or bucket made before (by an older version, or before the
    /// hub became a cluster) is given the replicas and the [`limits`] asked
    /// for now.
    async fn keep_config(&self, name: &str) -> Result<()> {
        let wanted = replicas()?;
        let l = limits::of(name.strip_prefix("KV_").unwrap_or(name));
        let mut stream = self
            .js
            .get_stream(name)
            .await
            .map_err(|e| Error::nats("open stream", e))?;
        let info = stream
            .info()
            .await
            .map_err(|e| Error::nats("stream info", e))?;
        let c = &info.config;
        if c.num_replicas.max(1) != wanted
            || c.max_bytes != l.max_bytes
            || c.max_age != l.max_age
            || c.max_message_size != l.max_message_size
        {
            let mut config = c.clone();
            config.num_replicas = wanted;
            config.max_bytes = l.max_bytes;
            config.max_age = l.max_age;
            config.max_message_size = l.max_message_size;
            self.js
                .update_stream(config)
                .await
                .map_err(|e| Error::nats("set the stream's replicas and limits", e))?;
            tracing::info!(
                stream = name,
                replicas = wanted,
                max_bytes = l.max_bytes,
                max_age_s = l.max_age.as_secs(),
                "The stream's replicas or limits changed."
            );
        }
        Ok(())
    }

    /// Opens a bucket created by [`Bus::ensure_topology`].
    pub async fn kv(&self, bucket: &str) -> Result<kv::Store> {
        // With a domain (behind a leaf server) writes go through the domain's
        // API prefix (`$JS.<domain>.API.$KV.<bucket>.<key>`): the bucket's
        // own subjects do not cross a leaf connection.
        self.js
            .get_key_value(bucket)
            .await
            .map_err(|e| Error::nats("open bucket", e))
    }

    /// Creates (or binds to) a durable pull consumer on a stream.
    pub async fn durable_consumer(
        &self,
        stream_name: &str,
        durable: &str,
        filter_subjects: Vec<String>,
        ack_wait: Duration,
        max_deliver: i64,
    ) -> Result<consumer::PullConsumer> {
        let stream = self
            .js
            .get_stream(stream_name)
            .await
            .map_err(|e| Error::nats("get stream", e))?;
        // Create or update: an upgraded service gets its new filter.
        stream
            .create_consumer(consumer::pull::Config {
                durable_name: Some(durable.into()),
                filter_subjects,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait,
                max_deliver,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::nats("create consumer", e))
    }
}

impl Bus {
    /// Creates (or updates) the durable consumer of `spec` and opens it.
    pub async fn consumer(&self, spec: &consumers::Spec) -> Result<consumer::PullConsumer> {
        self.durable_consumer(
            spec.stream,
            spec.name,
            spec.filters.clone(),
            spec.ack_wait,
            spec.max_deliver,
        )
        .await
    }
}

/// The next message a durable consumer's stream brings, or `None` at
/// shutdown or when the stream ends. An interruption (a missed heartbeat,
/// a reconnect) is logged, naming `what` the stream carries, and waited out.
/// The next message of a consumer, `None` at `shutdown` or when no more
/// can come (the consumer deleted, the stream ended); passing
/// interruptions (a missed heartbeat, a reconnect) are waited out.
pub async fn next_or_shutdown(
    messages: &mut consumer::pull::Stream,
    shutdown: &tokio_util::sync::CancellationToken,
    what: &str,
) -> Option<jetstream::Message> {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return None,
            m = futures::StreamExt::next(messages) => match m {
                Some(Ok(m)) => return Some(m),
                // Nothing more will come: the consumer is gone or refuses
                // our requests. The caller decides what that means.
                Some(Err(e)) if matches!(
                    e.kind(),
                    consumer::pull::MessagesErrorKind::ConsumerDeleted
                        | consumer::pull::MessagesErrorKind::RequestLimitExceeded
                        | consumer::pull::MessagesErrorKind::PushBasedConsumer
                ) => {
                    tracing::error!(error = %e, "The stream of {what} ended.");
                    return None;
                }
                Some(Err(e)) => tracing::warn!(error = %e, "The stream of {what} was interrupted."),
                None => return None,
            },
        }
    }
}

/// Reads a protobuf value from a KV entry, with its revision.
pub async fn kv_get<M: prost::Message + Name + Default>(
    store: &kv::Store,
    key: &str,
) -> Result<Option<(M, u64)>> {
    let entry = store
        .entry(key)
        .await
        .map_err(|e| Error::nats("kv get", e))?;
    match entry {
        Some(e) if matches!(e.operation, kv::Operation::Put) => {
            Ok(Some((decode(None, &e.value)?, e.revision)))
        }
        _ => Ok(None),
    }
}

/// Compare-and-set write: `revision` 0 creates the key, otherwise the key must
/// still be at `revision`. Returns `Ok(None)` when another writer got there first.
pub async fn kv_cas<M: prost::Message + Name>(
    store: &kv::Store,
    key: &str,
    value: &M,
    revision: u64,
) -> Result<Option<u64>> {
    let bytes = Bytes::from(value.encode_to_vec());
    let result = if revision == 0 {
        store.create(key, bytes).await.map_err(|e| match e.kind() {
            kv::CreateErrorKind::AlreadyExists => None,
            _ => Some(Error::nats("kv create", e)),
        })
    } else {
        store
            .update(key, bytes, revision)
            .await
            .map_err(|e| match e.kind() {
                kv::UpdateErrorKind::WrongLastRevision => None,
                _ => Some(Error::nats("kv update", e)),
            })
    };
    match result {
        Ok(rev) => Ok(Some(rev)),
        Err(None) => Ok(None),
        Err(Some(e)) => Err(e),
    }
}

/// Unconditional write of a protobuf value.
pub async fn kv_put<M: prost::Message + Name>(
    store: &kv::Store,
    key: &str,
    value: &M,
) -> Result<u64> {
    store
        .put(key, Bytes::from(value.encode_to_vec()))
        .await
        .map_err(|e| Error::nats("kv put", e))
}

/// Every key of a bucket (empty bucket → empty list).
pub async fn kv_keys(store: &kv::Store) -> Result<Vec<String>> {
    use futures::TryStreamExt;
    let keys = store.keys().await.map_err(|e| Error::nats("kv keys", e))?;
    keys.try_collect()
        .await
        .map_err(|e| Error::nats("kv keys", e))
}

#[cfg(test)]
mod tests {
    use super::{server_addrs, url_credentials};

    #[test]
    fn a_url_may_list_a_clusters_servers() {
        let addrs =
            server_addrs("nats://services:pw@nats:4222, nats://nats-2:4222,nats://nats-3:4222")
                .unwrap();
        let hosts: Vec<String> = addrs.iter().map(|a| a.host().to_string()).collect();
        assert_eq!(hosts, ["nats", "nats-2", "nats-3"]);
        assert_eq!(server_addrs("nats://127.0.0.1:4222").unwrap().len(), 1);
        let err = server_addrs("nats://a:4222,nats://b:port")
            .unwrap_err()
            .to_string();
        assert!(err.contains("server 2"), "{err}");
    }

    #[test]
    fn credentials_are_read_from_the_url() {
        assert_eq!(url_credentials("nats://127.0.0.1:4222"), None);
        assert_eq!(
            url_credentials("nats://pi-hall-1:s%40cret@hub:4222,nats://other:4222"),
            Some(("pi-hall-1".into(), "s@cret".into()))
        );
        assert_eq!(
            url_credentials("tls://services:pw@127.0.0.1:4222"),
            Some(("services".into(), "pw".into()))
        );
    }
}
