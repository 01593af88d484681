//! Registration with the NATS services API (`$SRV.PING/INFO/STATS`) and a
//! typed endpoint loop.

use std::future::Future;

use async_nats::HeaderMap;
use async_nats::service::{self, ServiceExt};
use futures::StreamExt;
use prost::Name;
use tokio_util::sync::CancellationToken;

use crate::{Error, Result, decode_message, encode, names};

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

/// Adds an endpoint named `name` on `subject`.
pub async fn endpoint(
    service: &service::Service,
    name: &str,
    subject: &str,
) -> Result<service::endpoint::Endpoint> {
    service
        .endpoint_builder()
        .name(name)
        .add(subject)
        .await
        .map_err(|e| Error::nats("add endpoint", e))
}

/// Serves typed requests on an endpoint until `shutdown`: decodes the request
/// (a bad payload gets a 400 reply and a log line), runs the handler, and
/// answers with the typed reply or the refusal. Up to `concurrency` requests
/// are handled at once.
pub async fn serve<Req, Resp, F, Fut>(
    endpoint: service::endpoint::Endpoint,
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

/// Pings every service instance on the bus and collects the answers that
/// arrive within `wait`.
pub async fn ping_all(
    client: &async_nats::Client,
    wait: std::time::Duration,
) -> Result<Vec<Instance>> {
    let inbox = client.new_inbox();
    let mut sub = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| Error::nats("subscribe", e))?;
    client
        .publish_with_reply(PING_SUBJECT, inbox, bytes::Bytes::new())
        .await
        .map_err(|e| Error::nats("publish", e))?;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(msg)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let Ok(info) = serde_json::from_slice::<serde_json::Value>(&msg.payload) {
            let field = |k: &str| {
                info.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            out.push(Instance {
                name: field("name"),
                id: field("id"),
                version: field("version"),
            });
        }
    }
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    Ok(out)
}
