//! What the server is doing, for Prometheus: `GET /metrics` in the text
//! exposition format (on the API's address, or on `--metrics-bind` alone).
//!
//! One [`Metrics`] per server (tests run several in one process), handed
//! to the edge, the WebSocket side and ingest, which count as they go.
//! Label values come from small fixed sets (operationIds, channels, close
//! codes), never from what a client sends, so a client cannot blow up the
//! number of series. Built on the `prometheus` crate, with its process
//! collector for CPU, memory and open files.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub struct Metrics {
    registry: Registry,
    /// Requests answered, by operationId and status.
    requests: IntCounterVec,
    /// Time from a request's head to its response, by operationId.
    latency: HistogramVec,
    /// Open WebSocket connections.
    pub ws_connections: IntGauge,
    /// Subscriptions held, by channel.
    ws_subscriptions: IntGaugeVec,
    /// Messages and their bytes written to WebSockets (replies and
    /// updates).
    pub ws_messages: IntCounter,
    pub ws_bytes: IntCounter,
    /// Updates a slow reader never got because a newer state of the same
    /// bar replaced them while it was behind.
    pub ws_coalesced: IntCounter,
    /// Connections closed, by close code ("none" when the client left
    /// without one).
    ws_closes: IntCounterVec,
    /// Trades and bars accepted by ingest.
    ingested: IntCounterVec,
    /// How late the broadcaster's passes end after their scheduled tick.
    pub broadcast_lag: Histogram,
    /// Reads of bars from the data source, and ingest writes, by source.
    source_reads: HistogramVec,
    ingest_writes: HistogramVec,
}

/// Buckets for latencies from 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

fn histogram_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(LATENCY_BUCKETS.to_vec()),
        labels,
    )
    .expect("a valid metric");
    registry
        .register(Box::new(h.clone()))
        .expect("registered once");
    h
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(c.clone()))
        .expect("registered once");
    c
}

/// The `code` label of a close (see [`Metrics::closed`]).
pub fn close_label(code: Option<u16>) -> &'static str {
    const DEFINED: [(u16, &str); 16] = [
        (1000, "1000"),
        (1001, "1001"),
        (1002, "1002"),
        (1003, "1003"),
        (1005, "1005"),
        (1006, "1006"),
        (1007, "1007"),
        (1008, "1008"),
        (1009, "1009"),
        (1010, "1010"),
        (1011, "1011"),
        (1012, "1012"),
        (1013, "1013"),
        (1014, "1014"),
        (1015, "1015"),
        (4001, "4001"),
    ];
    match code {
        None => "none",
        Some(c) => match DEFINED.iter().find(|(n, _)| *n == c) {
            Some((_, label)) => label,
            None if (3000..4000).contains(&c) => "3xxx",
            None if (4000..5000).contains(&c) => "4xxx",
            None => "other",
        },
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        // Process CPU, memory, open files and start time, read from /proc.
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("registered once");
        let latency = histogram_vec(
            &registry,
            "trading_http_request_duration_seconds",
            "Time from a request's head to its response, by operationId.",
            &["operation"],
        );
        let broadcast_lag = Histogram::with_opts(
            HistogramOpts::new(
                "trading_ws_broadcast_lag_seconds",
                "How long after its scheduled tick each broadcaster pass (one slot of the \
                 broadcast interval's topics) finished publishing.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("a valid metric");
        registry
            .register(Box::new(broadcast_lag.clone()))
            .expect("registered once");
        let ws_connections = IntGauge::new("trading_ws_connections", "Open WebSocket connections.")
            .expect("a valid metric");
        registry
            .register(Box::new(ws_connections.clone()))
            .expect("registered once");
        let ws_subscriptions = IntGaugeVec::new(
            Opts::new(
                "trading_ws_subscriptions",
                "WebSocket subscriptions held, by channel.",
            ),
            &["channel"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(ws_subscriptions.clone()))
            .expect("registered once");
        Metrics {
            requests: counter_vec(
                &registry,
                "trading_http_requests_total",
                "HTTP requests answered, by operationId and status.",
                &["operation", "status"],
            ),
            latency,
            ws_connections,
            ws_subscriptions,
            ws_messages: counter(
                &registry,
                "trading_ws_messages_sent_total",
                "Messages written to WebSocket clients (replies and updates).",
            ),
            ws_bytes: counter(
                &registry,
                "trading_ws_sent_bytes_total",
                "Payload bytes of the messages written to WebSocket clients.",
            ),
            ws_coalesced: counter(
                &registry,
                "trading_ws_updates_coalesced_total",
                "Updates a slow WebSocket reader skipped: a newer state of the same bar \
                 replaced them while it was behind.",
            ),
            ws_closes: counter_vec(
                &registry,
                "trading_ws_closes_total",
                "WebSocket connections closed, by close code (none: the client went away \
                 without one).",
                &["code"],
            ),
            ingested: counter_vec(
                &registry,
                "trading_ingested_total",
                "Trades and bars applied by ingest requests answered 200, by kind.",
                &["kind"],
            ),
            broadcast_lag,
            source_reads: histogram_vec(
                &registry,
                "trading_source_read_duration_seconds",
                "Time the data source took to read one getBars page, by source (synthetic, \
                 sqlite, postgres).",
                &["source"],
            ),
            ingest_writes: histogram_vec(
                &registry,
                "trading_ingest_write_duration_seconds",
                "Time an ingest request took to be applied and made durable, by source.",
                &["source"],
            ),
            registry,
        }
    }

    /// A request answered.
    pub fn request(&self, operation: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[operation, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[operation])
            .observe(took.as_secs_f64());
    }

    pub fn subscribed(&self, channel: &str, by: i64) {
        self.ws_subscriptions.with_label_values(&[channel]).add(by);
    }

    /// A WebSocket closed, with its close code (the client's, when it
    /// closed). Labels come from a fixed set, whatever a client sends: the
    /// codes RFC 6455 and our spec define by their number, the ranges an
    /// application may use as `3xxx` and `4xxx`, anything else as `other`.
    pub fn closed(&self, code: Option<u16>) {
        self.ws_closes.with_label_values(&[close_label(code)]).inc();
    }

    pub fn source_read(&self, source: &str, took: Duration) {
        self.source_reads
            .with_label_values(&[source])
            .observe(took.as_secs_f64());
    }

    pub fn ingest_write(&self, source: &str, took: Duration) {
        self.ingest_writes
            .with_label_values(&[source])
            .observe(took.as_secs_f64());
    }

    pub fn ingested(&self, kind: &str, n: usize) {
        self.ingested.with_label_values(&[kind]).inc_by(n as u64);
    }

    /// Every metric, in the text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into memory fails only on a metric family that is not
        // valid, which `new` would have refused.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The label of a request: its operationId in the spec, or one of a few
/// fixed names for what the spec does not list (so a client sending
/// random paths adds no series).
pub fn operation_label(
    operation: Option<trading_pro::api::Operation>,
    method: &http::Method,
    path: &str,
) -> &'static str {
    match operation {
        Some(op) => op.facts().operation_id,
        None if path == WS_PATH => "websocket",
        None if path == METRICS_PATH => "metrics",
        None if method == http::Method::OPTIONS => "preflight",
        None => "other",
    }
}

/// Where the WebSocket is served (not an operation of the REST spec).
pub const WS_PATH: &str = "/api/v1/ws";
/// Where Prometheus scrapes.
pub const METRICS_PATH: &str = "/metrics";

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

#[cfg(test)]
mod tests {
    use super::close_label;

    #[test]
    fn close_labels_come_from_a_fixed_set() {
        assert_eq!(close_label(Some(1000)), "1000");
        assert_eq!(close_label(Some(1008)), "1008");
        assert_eq!(close_label(Some(4001)), "4001");
        assert_eq!(close_label(None), "none");
        let mut labels: Vec<&str> = (0..=u16::MAX).map(|c| close_label(Some(c))).collect();
        labels.sort();
        labels.dedup();
        // 16 defined codes, two ranges and the rest: whatever clients send.
        assert_eq!(labels.len(), 19, "{labels:?}");
        assert_eq!(close_label(Some(3999)), "3xxx");
        assert_eq!(close_label(Some(4002)), "4xxx");
        assert_eq!(close_label(Some(1004)), "other");
        assert_eq!(close_label(Some(65535)), "other");
    }
}
