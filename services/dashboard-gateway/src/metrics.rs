//! The gateway's metrics, in the Prometheus text format (served at
//! `GET /metrics` by `health`): its own HTTP and SSE counters, the bus events it relayed, turn latencies from the
//! director's `latency` events, and every service instance's statistics
//! gathered over the NATS services API at scrape time.

use std::time::Duration;

use axum::http::StatusCode;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use tokio::sync::OwnedSemaphorePermit;

/// How long a scrape waits for the services' statistics.
pub const STATS_WAIT: Duration = Duration::from_millis(300);

/// The gateway's own metrics, in a registry of its own (not the process-wide
/// default), so every router built in a test counts separately.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    sse_clients: IntGaugeVec,
    events_relayed: IntCounterVec,
    turn_latency: Histogram,
    speech_to_play: Histogram,
    talk_sockets: IntGauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

// The metric definitions below are constants: building them cannot fail.
#[allow(clippy::expect_used)]
impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "cinema_http_requests_total",
                "HTTP requests answered by the gateway, by route, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("valid metric");
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "cinema_http_request_duration_seconds",
                "Time to answer an HTTP request (to the first byte for streams), by route.",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["route"],
        )
        .expect("valid metric");
        let sse_clients = IntGaugeVec::new(
            Opts::new(
                "cinema_sse_clients",
                "Server-sent event clients connected now, by stream (events, audio).",
            ),
            &["stream"],
        )
        .expect("valid metric");
        let events_relayed = IntCounterVec::new(
            Opts::new(
                "cinema_bus_events_relayed_total",
                "Session events read from the bus and relayed to SSE clients, by kind.",
            ),
            &["event"],
        )
        .expect("valid metric");
        let turn_latency = Histogram::with_opts(
            HistogramOpts::new(
                "cinema_turn_latency_seconds",
                "Director turn time, from the visitor's line to the play command \
                 (conversation latency events, total_ms).",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0,
            ]),
        )
        .expect("valid metric");
        let speech_to_play = Histogram::with_opts(
            HistogramOpts::new(
                "cinema_speech_to_play_seconds",
                "From the end of the visitor's speech (the VAD on the Pi or the page) \
                 to the play command that answers it. Compares two machines' clocks: \
                 keep them in step (NTP).",
            )
            .buckets(vec![
                0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 8.0, 13.0,
            ]),
        )
        .expect("valid metric");
        let talk_sockets = IntGauge::new(
            "cinema_talk_sockets",
            "Browser microphone sockets connected now (pages talking as a session's TV).",
        )
        .expect("valid metric");
        for m in [
            Box::new(http_requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(http_seconds.clone()),
            Box::new(sse_clients.clone()),
            Box::new(events_relayed.clone()),
            Box::new(turn_latency.clone()),
            Box::new(speech_to_play.clone()),
            Box::new(talk_sockets.clone()),
        ] {
            registry.register(m).expect("metric names are unique");
        }
        for stream in ["events", "audio"] {
            sse_clients.with_label_values(&[stream]).set(0);
        }
        Metrics {
            registry,
            http_requests,
            http_seconds,
            sse_clients,
            events_relayed,
            turn_latency,
            speech_to_play,
            talk_sockets,
        }
    }

    /// A browser's microphone socket opened (+1) or closed (-1).
    pub fn talk_socket(&self, delta: i64) {
        self.talk_sockets.add(delta);
    }

    pub fn event_relayed(&self, event: &str) {
        self.events_relayed.with_label_values(&[event]).inc();
    }

    pub fn turn_latency(&self, total_ms: u32) {
        self.turn_latency.observe(f64::from(total_ms) / 1000.0);
    }

    pub fn speech_to_play(&self, ms: u32) {
        self.speech_to_play.observe(f64::from(ms) / 1000.0);
    }

    /// Counts an SSE client for as long as the returned guard lives.
    /// Counts a client in; `slot` (its place under the gateway's limit) is
    /// given back with it.
    pub fn sse_client(&self, stream: &str, slot: Option<OwnedSemaphorePermit>) -> SseClient {
        let gauge = self.sse_clients.with_label_values(&[stream]);
        gauge.inc();
        SseClient(gauge, slot)
    }

    pub(crate) fn http(&self, route: &str, method: &str, status: StatusCode, took: Duration) {
        self.http_requests
            .with_label_values(&[route, method, status.as_str()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    /// The text exposition: the gateway's metrics, then the services'.
    pub fn render(&self, services: &[bus::service::InstanceStats]) -> String {
        let mut families = self.registry.gather();
        families.extend(service_families(services));
        let mut out = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "Cannot encode the metrics.");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

/// One connected SSE client; dropping it counts the client out and frees
/// its slot.
pub struct SseClient(IntGauge, #[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Every service instance's statistics as metric families, built afresh for
/// each scrape so instances that went away disappear.
#[allow(clippy::expect_used)] // Constant definitions, as above.
fn service_families(
    services: &[bus::service::InstanceStats],
) -> Vec<prometheus::proto::MetricFamily> {
    let registry = Registry::new();
    let labels = ["service", "instance", "endpoint"];
    let requests = IntCounterVec::new(
        Opts::new(
            "cinema_service_requests_total",
            "Requests handled by each service endpoint (NATS services API).",
        ),
        &labels,
    )
    .expect("valid metric");
    let errors = IntCounterVec::new(
        Opts::new(
            "cinema_service_errors_total",
            "Requests each service endpoint refused or failed (NATS services API).",
        ),
        &labels,
    )
    .expect("valid metric");
    let processing = prometheus::GaugeVec::new(
        Opts::new(
            "cinema_service_processing_seconds_average",
            "Average time each service endpoint took per request (NATS services API).",
        ),
        &labels,
    )
    .expect("valid metric");
    let up = prometheus::GaugeVec::new(
        Opts::new(
            "cinema_service_uptime_seconds",
            "How long each service instance has been running.",
        ),
        &["service", "instance", "version"],
    )
    .expect("valid metric");
    let now = wire::now_ms();
    for s in services {
        up.with_label_values(&[s.name.as_str(), s.id.as_str(), s.version.as_str()])
            .set((now - s.started_ms).max(0) as f64 / 1000.0);
        for e in &s.endpoints {
            let l = [s.name.as_str(), s.id.as_str(), e.name.as_str()];
            requests.with_label_values(&l).inc_by(e.requests);
            errors.with_label_values(&l).inc_by(e.errors);
            processing
                .with_label_values(&l)
                .set(e.average_processing_time.as_secs_f64());
        }
    }
    for m in [
        Box::new(requests) as Box<dyn prometheus::core::Collector>,
        Box::new(errors),
        Box::new(processing),
        Box::new(up),
    ] {
        registry.register(m).expect("metric names are unique");
    }
    registry.gather()
}
