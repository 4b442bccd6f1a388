//! Prometheus metrics. The request path touches only handles resolved once per thread and label
//! set (atomics, no lock, no allocation); everything that is a state rather than an event
//! (connections, credential expiry) is read when `/metrics` is scraped.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::core::outcome::Outcome;

/// Request durations are in this many buckets, from 100 µs (a cached file) to a minute.
const DURATION_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Each `Metrics` has a number, so a thread's cached handles never cross instances.
static INSTANCES: AtomicUsize = AtomicUsize::new(0);

pub struct Metrics {
    instance: usize,
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    body_bytes: IntCounterVec,
    upstream_errors: IntCounterVec,
    connections: IntGaugeVec,
    credentials_expiry: GaugeVec,
    reloads: IntCounterVec,
    shadow: IntCounterVec,
    limited: IntCounterVec,
    certificate_expiry: GaugeVec,
    certificate_renewals: IntCounterVec,
    pub log_dropped: IntCounter,
}

/// The handles for one (route, outcome, status).
struct Handles {
    requests: IntCounter,
    duration: Histogram,
    body_bytes: IntCounter,
}

thread_local! {
    static HANDLES: RefCell<HashMap<(usize, u16, Outcome, u16), Handles>> = RefCell::new(HashMap::new());
}

/// What one answered request adds.
pub struct Observation<'a> {
    /// The route's number and prefix (the label); `None` outside every route.
    pub route: Option<(usize, &'a str)>,
    pub outcome: Outcome,
    pub status: Option<StatusCode>,
    pub duration: Duration,
    pub body_bytes: u64,
}

fn must<T>(metric: prometheus::Result<T>) -> T {
    // Only a name, label or bucket set written wrong in this file can fail here.
    metric.unwrap_or_else(|e| panic!("a metric defined in telemetry/metrics.rs is invalid: {e}"))
}

impl Metrics {
    // Long on purpose: a table of metric definitions, one per metric; splitting it would only scatter the table.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let register = |c: Box<dyn prometheus::core::Collector>| must(registry.register(c));
        let requests = must(IntCounterVec::new(
            Opts::new(
                "spillway_requests_total",
                "Requests answered, by route, outcome and status.",
            ),
            &["route", "outcome", "status"],
        ));
        let duration = must(HistogramVec::new(
            HistogramOpts::new(
                "spillway_request_duration_seconds",
                "Time from a complete request head to the response sent, by route and outcome.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["route", "outcome"],
        ));
        let body_bytes = must(IntCounterVec::new(
            Opts::new(
                "spillway_response_body_bytes_total",
                "Response body bytes sent, by route and outcome.",
            ),
            &["route", "outcome"],
        ));
        let upstream_errors = must(IntCounterVec::new(
            Opts::new(
                "spillway_upstream_errors_total",
                "Failed exchanges with an upstream, by upstream and kind (connect, timeout, reset, closed, protocol, other).",
            ),
            &["upstream", "kind"],
        ));
        let connections = must(IntGaugeVec::new(
            Opts::new(
                "spillway_connections",
                "Open client connections (open: all; idle: HTTP/1 waiting for a request).",
            ),
            &["state"],
        ));
        let credentials_expiry = must(GaugeVec::new(
            Opts::new(
                "spillway_credentials_expiry_seconds",
                "Seconds until the signing credentials of a bucket expire (temporary credentials only).",
            ),
            &["bucket"],
        ));
        let reloads = must(IntCounterVec::new(
            Opts::new(
                "spillway_config_reloads_total",
                "Reloads asked of this server and its predecessors, by result (ok, failed).",
            ),
            &["result"],
        ));
        let shadow = must(IntCounterVec::new(
            Opts::new(
                "spillway_shadow_total",
                "Requests under shadow routes, by route, what spillway would have done, and the status the upstream answered.",
            ),
            &["route", "would", "upstream_status"],
        ));
        let limited = must(IntCounterVec::new(
            Opts::new(
                "spillway_limited_total",
                "Requests refused before the upstream by a limit, by route and reason (max_body, rate, max_inflight).",
            ),
            &["route", "reason"],
        ));
        let certificate_expiry = must(GaugeVec::new(
            Opts::new(
                "spillway_certificate_expiry_timestamp_seconds",
                "When each served TLS certificate expires (Unix time), by its first name.",
            ),
            &["name"],
        ));
        let certificate_renewals = must(IntCounterVec::new(
            Opts::new(
                "spillway_certificate_renewals_total",
                "Certificate orders placed with an ACME CA, by first name and result (ok, failed).",
            ),
            &["name", "result"],
        ));
        let log_dropped = must(IntCounter::new(
            "spillway_access_log_dropped_total",
            "Access log lines dropped because the log could not keep up or be written.",
        ));
        let build = must(IntGaugeVec::new(
            Opts::new(
                "spillway_build_info",
                "The running build: version and git commit.",
            ),
            &["version", "git"],
        ));
        build
            .with_label_values(&[env!("CARGO_PKG_VERSION"), crate::GIT_HASH])
            .set(1);
        for result in ["ok", "failed"] {
            reloads.with_label_values(&[result]);
        }
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(body_bytes.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(connections.clone()),
            Box::new(credentials_expiry.clone()),
            Box::new(reloads.clone()),
            Box::new(shadow.clone()),
            Box::new(limited.clone()),
            Box::new(certificate_expiry.clone()),
            Box::new(certificate_renewals.clone()),
            Box::new(log_dropped.clone()),
            Box::new(build),
        ] {
            register(collector);
        }
        Metrics {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            registry,
            requests,
            duration,
            body_bytes,
            upstream_errors,
            connections,
            credentials_expiry,
            reloads,
            shadow,
            limited,
            certificate_expiry,
            certificate_renewals,
            log_dropped,
        }
    }

    /// Counts one answered request.
    pub fn observe(&self, o: &Observation) {
        let route_id = o.route.map_or(u16::MAX, |(id, _)| id as u16);
        let status = o.status.map_or(0, |s| s.as_u16());
        let key = (self.instance, route_id, o.outcome, status);
        HANDLES.with(|handles| {
            let mut handles = handles.borrow_mut();
            let h = handles.entry(key).or_insert_with(|| self.handles(o));
            h.requests.inc();
            h.duration.observe(o.duration.as_secs_f64());
            h.body_bytes.inc_by(o.body_bytes);
        });
    }

    /// Resolves the label set of `o` (once per thread).
    fn handles(&self, o: &Observation) -> Handles {
        // No route, no status: `-`, as in the text and combined access logs.
        let route = o.route.map_or(
            "-",
            |(_, prefix)| if prefix.is_empty() { "/" } else { prefix },
        );
        let status = o
            .status
            .map_or_else(|| "-".to_owned(), |s| s.as_u16().to_string());
        let outcome = o.outcome.as_str();
        Handles {
            requests: self.requests.with_label_values(&[route, outcome, &status]),
            duration: self.duration.with_label_values(&[route, outcome]),
            body_bytes: self.body_bytes.with_label_values(&[route, outcome]),
        }
    }

    /// Counts a shadowed request: what spillway would have done, and what the upstream did.
    pub fn shadow(&self, route: &str, would: Outcome, upstream_status: Option<StatusCode>) {
        let status = upstream_status.map_or(0, |s| s.as_u16()).to_string();
        self.shadow
            .with_label_values(&[route, would.as_str(), &status])
            .inc();
    }

    /// Counts a request a limit kept from the upstream (`route`: its prefix, `-` for none).
    pub fn limited(&self, route: &str, reason: &str) {
        self.limited.with_label_values(&[route, reason]).inc();
    }

    /// Shows when the certificate served for `name` expires.
    pub fn certificate_expires(&self, name: &str, at: std::time::SystemTime) {
        let seconds = at
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        self.certificate_expiry
            .with_label_values(&[name])
            .set(seconds.floor());
    }

    /// Counts an ACME order for `name`'s certificate.
    pub fn certificate_renewal(&self, name: &str, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.certificate_renewals
            .with_label_values(&[name, result])
            .inc();
    }

    /// Counts a failed exchange with `upstream`.
    pub fn upstream_error(&self, upstream: &str, kind: &str) {
        self.upstream_errors
            .with_label_values(&[upstream, kind])
            .inc();
    }

    /// Carries the reload counts of the process this one replaced.
    pub fn count_reloads(&self, ok: u64, failed: u64) {
        self.reloads.with_label_values(&["ok"]).inc_by(ok);
        self.reloads.with_label_values(&["failed"]).inc_by(failed);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.with_label_values(&[result]).inc();
    }

    /// The reload counts so far (`ok`, `failed`), to hand to a successor.
    pub fn reload_counts(&self) -> (u64, u64) {
        let count = |result: &str| self.reloads.with_label_values(&[result]).get();
        (count("ok"), count("failed"))
    }

    /// The exposition text, with the states read now.
    pub fn render(&self, state: &State) -> String {
        self.connections
            .with_label_values(&["open"])
            .set(state.open_connections as i64);
        self.connections
            .with_label_values(&["idle"])
            .set(state.idle_connections as i64);
        for (bucket, expiry) in &state.credential_expiry {
            let gauge: Gauge = self.credentials_expiry.with_label_values(&[bucket]);
            gauge.set(*expiry);
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode metrics: {e}\n"))
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

/// What `/metrics` reads at scrape time.
#[derive(Debug, Default)]
pub struct State {
    pub open_connections: usize,
    pub idle_connections: usize,
    /// Seconds until each bucket's credentials expire, for temporary ones.
    pub credential_expiry: Vec<(String, f64)>,
}
