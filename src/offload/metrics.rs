//! What `offload --watch` exposes on `/metrics`: files and bytes moved, failed, conflicted and
//! skipped (by reason), what is pending and for how long, and when a pass last went through
//! without a failure, so that an alert notices a daemon that stopped moving files.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::offload::file::Done;

/// A route's queue, as its watch last left it.
#[derive(Default, Clone, Copy)]
struct Pending {
    files: usize,
    /// Unix time (ms) the oldest pending file was first noticed.
    oldest_since_ms: Option<u64>,
}

pub struct OffloadMetrics {
    registry: Registry,
    files: IntCounterVec,
    bytes: IntCounterVec,
    skipped: IntCounterVec,
    pending_files: IntGaugeVec,
    oldest_pending: GaugeVec,
    last_success: Gauge,
    walks: IntCounterVec,
    pending: Mutex<HashMap<String, Pending>>,
}

fn must<T>(metric: prometheus::Result<T>) -> T {
    // Only a name, label or help text written wrong in this file can fail here.
    metric.unwrap_or_else(|e| panic!("a metric defined in offload/metrics.rs is invalid: {e}"))
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl OffloadMetrics {
    // Long on purpose: a table of metric definitions, one per metric.
    pub fn new() -> OffloadMetrics {
        let registry = Registry::new();
        let files = must(IntCounterVec::new(
            Opts::new(
                "spillway_offload_files_total",
                "Files offload finished with, by route and outcome (uploaded, exists, moved_elsewhere, conflict, failed, skipped, would_move).",
            ),
            &["route", "outcome"],
        ));
        let bytes = must(IntCounterVec::new(
            Opts::new(
                "spillway_offload_bytes_total",
                "Bytes uploaded and proven, by route.",
            ),
            &["route"],
        ));
        let skipped = must(IntCounterVec::new(
            Opts::new(
                "spillway_offload_skipped_total",
                "Paths never moved, by route and reason (dotfile, symlink, ...); each counted once per run.",
            ),
            &["route", "reason"],
        ));
        let pending_files = must(IntGaugeVec::new(
            Opts::new(
                "spillway_offload_pending_files",
                "Files waiting to move (too young, or to be tried again), by route.",
            ),
            &["route"],
        ));
        let oldest_pending = must(GaugeVec::new(
            Opts::new(
                "spillway_offload_oldest_pending_age_seconds",
                "How long the oldest pending file has waited, by route; 0 when none waits.",
            ),
            &["route"],
        ));
        let last_success = must(Gauge::new(
            "spillway_offload_last_success_timestamp_seconds",
            "When a pass over the due files (or a walk) last ended without a failure (Unix time).",
        ));
        let walks = must(IntCounterVec::new(
            Opts::new(
                "spillway_offload_walks_total",
                "Walks begun, by route and kind: full (at the start, every 10 minutes, after lost events) or directory (one that appeared).",
            ),
            &["route", "kind"],
        ));
        for metric in [
            Box::new(walks.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(files.clone()),
            Box::new(bytes.clone()),
            Box::new(skipped.clone()),
            Box::new(pending_files.clone()),
            Box::new(oldest_pending.clone()),
            Box::new(last_success.clone()),
        ] {
            must(registry.register(metric));
        }
        OffloadMetrics {
            registry,
            files,
            bytes,
            skipped,
            pending_files,
            oldest_pending,
            last_success,
            walks,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn done(&self, route: &str, done: &Done) {
        self.files.with_label_values(&[route, done.outcome()]).inc();
        if let Done::Uploaded { bytes, .. } = done {
            self.bytes.with_label_values(&[route]).inc_by(*bytes);
        }
    }

    pub fn skipped(&self, route: &str, reason: &str) {
        self.skipped.with_label_values(&[route, reason]).inc();
    }

    /// A walk of `route` began: `full`, or below a `directory`.
    pub fn walked(&self, route: &str, kind: &str) {
        self.walks.with_label_values(&[route, kind]).inc();
    }

    /// A pass ended without a failure.
    pub fn succeeded(&self) {
        self.last_success.set(unix_now());
    }

    /// `route`'s queue now: `files` pending, the oldest first noticed at `oldest` (Unix ms).
    pub fn pending(&self, route: &str, files: usize, oldest: Option<u64>) {
        if let Ok(mut pending) = self.pending.lock() {
            pending.insert(
                route.to_owned(),
                Pending {
                    files,
                    oldest_since_ms: oldest,
                },
            );
        }
    }

    /// The Prometheus text of everything, ages as of now.
    pub fn render(&self) -> String {
        if let Ok(pending) = self.pending.lock() {
            let now = unix_now();
            for (route, queue) in pending.iter() {
                self.pending_files
                    .with_label_values(&[route])
                    .set(i64::try_from(queue.files).unwrap_or(i64::MAX));
                let age = queue
                    .oldest_since_ms
                    .map_or(0.0, |since| (now - since as f64 / 1000.0).max(0.0));
                self.oldest_pending.with_label_values(&[route]).set(age);
            }
        }
        TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# cannot encode the metrics: {e}\n"))
    }
}

impl Default for OffloadMetrics {
    fn default() -> Self {
        Self::new()
    }
}
