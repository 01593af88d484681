//! Registration with the NATS services API (`$SRV.PING/INFO/STATS`) and a
//! typed endpoint loop.

use std::future::Future;
use std::marker::PhantomData;

use async_nats::HeaderMap;
use async_nats::service::{self, ServiceExt};
use futures::StreamExt;
use prost::Name;
use tokio_util::sync::CancellationToken;

use crate::{Endpoint, Error, Result, decode_message, encode, names};

/// A refusal sent back to a requester: an HTTP-like code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub code: u16,
    pub message: String,
}

impl Reject {
    pub fn new(code: u16, message: impl Into<String>) -> Self {
        Reject {
            code,
            message: message.into(),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }
    pub fn limit(message: impl Into<String>) -> Self {
        Self::new(429, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(503, message)
    }
}

impl From<Error> for Reject {
    /// A bus failure while serving: remote refusals pass through, the rest
    /// mean a dependency is unavailable.
    fn from(e: Error) -> Self {
        match e {
            Error::Remote { code, message } => Reject { code, message },
            Error::InvalidId { .. } | Error::Decode { .. } | Error::WrongType { .. } => {
                Reject::bad_request(e.to_string())
            }
            other => Reject::unavailable(other.to_string()),
        }
    }
}

/// Reads the services API error headers of a reply.
pub(crate) fn remote_error(headers: Option<&HeaderMap>) -> Option<Error> {
    let headers = headers?;
    let code = headers.get(names::SERVICE_ERROR_CODE_HEADER)?;
    let message = headers
        .get(names::SERVICE_ERROR_HEADER)
        .map(|v| v.as_str().to_string())
        .unwrap_or_default();
    Some(Error::Remote {
        code: code.as_str().parse().unwrap_or(500),
        message,
    })
}

/// Registers a service instance; endpoints added to it answer in a queue
/// group named after the service, so replicas share the load.
pub async fn start(
    client: &async_nats::Client,
    name: &str,
    description: &str,
) -> Result<service::Service> {
    client
        .service_builder()
        .description(description)
        .queue_group(name)
        .start(name, env!("CARGO_PKG_VERSION"))
        .await
        .map_err(|e| Error::nats("register service", e))
}

/// An endpoint added to a service, ready for [`serve`] with its handler of
/// the endpoint's own types.
pub struct Served<Req, Resp> {
    inner: service::endpoint::Endpoint,
    types: PhantomData<fn(Req) -> Resp>,
}

/// Adds `endpoint` to `service` (under its name and subject).
pub async fn endpoint<Req, Resp>(
    service: &service::Service,
    endpoint: &Endpoint<Req, Resp>,
) -> Result<Served<Req, Resp>> {
    let inner = service
        .endpoint_builder()
        .name(endpoint.name())
        .add(endpoint.subject().to_string())
        .await
        .map_err(|e| Error::nats("add endpoint", e))?;
    Ok(Served {
        inner,
        types: PhantomData,
    })
}

/// Serves typed requests on an endpoint until `shutdown`: decodes the request
/// (a bad payload gets a 400 reply and a log line), runs the handler, and
/// answers with the typed reply or the refusal. Up to `concurrency` requests
/// are handled at once.
pub async fn serve<Req, Resp, F, Fut>(
    endpoint: Served<Req, Resp>,
    shutdown: CancellationToken,
    concurrency: usize,
    handler: F,
) where
    Req: prost::Message + Name + Default,
    Resp: prost::Message + Name,
    F: Fn(Req) -> Fut,
    Fut: Future<Output = std::result::Result<Resp, Reject>>,
{
    endpoint
        .inner
        .take_until(shutdown.cancelled_owned())
        .for_each_concurrent(concurrency, |request| {
            let handler = &handler;
            async move {
                let subject = request.message.subject.to_string();
                let outcome = match decode_message::<Req>(&request.message) {
                    Ok(req) => handler(req).await,
                    Err(e) => {
                        tracing::warn!(%subject, error = %e, "Refused a malformed request.");
                        Err(Reject::bad_request(e.to_string()))
                    }
                };
                let sent = match outcome {
                    Ok(resp) => {
                        let (headers, payload) = encode(&resp);
                        request.respond_with_headers(Ok(payload), headers).await
                    }
                    Err(reject) => {
                        if reject.code >= 500 {
                            tracing::warn!(%subject, code = reject.code, message = %reject.message, "A request failed.");
                        } else {
                            tracing::debug!(%subject, code = reject.code, message = %reject.message, "Refused a request.");
                        }
                        request
                            .respond(Err(service::error::Error {
                                status: reject.message,
                                code: reject.code as usize,
                            }))
                            .await
                    }
                };
                if let Err(e) = sent {
                    tracing::debug!(%subject, error = %e, "Could not send a reply.");
                }
            }
        })
        .await;
}

/// Subject every services-API instance answers a ping on.
pub const PING_SUBJECT: &str = "$SRV.PING";

/// One instance's answer to `$SRV.PING`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub name: String,
    pub id: String,
    pub version: String,
}

/// Subject every services-API instance answers its statistics on.
pub const STATS_SUBJECT: &str = "$SRV.STATS";

/// Sends one discovery request (`$SRV.PING`, `$SRV.STATS`, …) and collects
/// the JSON answers that arrive within `wait`; answers that are not JSON are
/// skipped.
async fn gather(
    client: &async_nats::Client,
    subject: &'static str,
    wait: std::time::Duration,
) -> Result<Vec<serde_json::Value>> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::nats("subscribe", e))?;
    client
        .publish_with_reply(subject, inbox, bytes::Bytes::new())
        .await
        .map_err(|e| Error::nats("publish", e))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&msg.payload) {
            out.push(v);
        }
    }
    Ok(out)
}

fn str_field(v: &serde_json::Value, k: &str) -> String {
    v.get(k)
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string()
}

/// Pings every service instance on the bus and collects the answers that
/// arrive within `wait`.
pub async fn ping_all(
    client: &async_nats::Client,
    wait: std::time::Duration,
) -> Result<Vec<Instance>> {
    let mut out: Vec<Instance> = gather(client, PING_SUBJECT, wait)
        .await?
        .iter()
        .map(|info| Instance {
            name: str_field(info, "name"),
            id: str_field(info, "id"),
            version: str_field(info, "version"),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}

/// One endpoint's counters, as its instance reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct EndpointStats {
    pub name: String,
    pub subject: String,
    pub requests: u64,
    pub errors: u64,
    /// Total time spent handling requests.
    pub processing_time: std::time::Duration,
    pub average_processing_time: std::time::Duration,
    /// `code:message` of the latest error, empty when none.
    pub last_error: String,
}

/// One instance's answer to `$SRV.STATS`.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceStats {
    pub name: String,
    pub id: String,
    pub version: String,
    /// When the instance started (Unix milliseconds; 0 when unreadable).
    pub started_ms: i64,
    pub endpoints: Vec<EndpointStats>,
}

impl InstanceStats {
    pub fn requests(&self) -> u64 {
        self.endpoints.iter().map(|e| e.requests).sum()
    }
    pub fn errors(&self) -> u64 {
        self.endpoints.iter().map(|e| e.errors).sum()
    }
    /// Average handling time over every endpoint's requests.
    pub fn average_processing_time(&self) -> std::time::Duration {
        let total: std::time::Duration = self.endpoints.iter().map(|e| e.processing_time).sum();
        match self.requests() {
            0 => std::time::Duration::ZERO,
            n => total / u32::try_from(n).unwrap_or(u32::MAX),
        }
    }
}

/// Asks every service instance for its statistics (`$SRV.STATS`) and
/// collects the answers that arrive within `wait`, sorted by name and id.
/// An answer that does not read as services-API statistics is skipped.
pub async fn stats_all(
    client: &async_nats::Client,
    wait: std::time::Duration,
) -> Result<Vec<InstanceStats>> {
    let mut out: Vec<InstanceStats> = gather(client, STATS_SUBJECT, wait)
        .await?
        .into_iter()
        .filter_map(|v| serde_json::from_value::<service::Stats>(v).ok())
        .map(|s| InstanceStats {
            started_ms: i64::try_from(s.started.unix_timestamp_nanos() / 1_000_000)
                .unwrap_or_default(),
            name: s.name,
            id: s.id,
            version: s.version,
            endpoints: s
                .endpoints
                .into_iter()
                .map(|e| EndpointStats {
                    name: e.name,
                    subject: e.subject,
                    requests: e.requests as u64,
                    errors: e.errors as u64,
                    processing_time: e.processing_time,
                    average_processing_time: e.average_processing_time,
                    last_error: e
                        .last_error
                        .map(|e| format!("{}:{}", e.code, e.status))
                        .unwrap_or_default(),
                })
                .collect(),
        })
        .collect();
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}
