//! What operators observe: Prometheus metrics and the access log, fed by one record per request.

pub mod access_log;
pub mod metrics;
pub mod systemd;

use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use http::HeaderMap;

use crate::core::site::Route;
use access_log::{AccessLog, Entry};
use metrics::{Metrics, Observation};

/// The metrics and the access log of one server.
pub struct Telemetry {
    pub metrics: Metrics,
    /// Requests are counted only when something can read the counts (the admin listener).
    pub count_requests: bool,
    pub log: AccessLog,
}

impl Telemetry {
    /// Counts and logs one request. `route` gives the label and the log's route.
    pub fn record(&self, route: Option<&Route>, entry: &Entry) {
        if self.count_requests {
            self.observe(route, entry);
        }
        self.log.write(entry);
    }

    fn observe(&self, route: Option<&Route>, entry: &Entry) {
        self.metrics.observe(&Observation {
            route: route.map(|r| (r.id, r.prefix.as_str())),
            outcome: entry.outcome,
            status: entry.status,
            duration: entry.duration,
            body_bytes: entry.body_bytes,
        });
    }
}

/// A request's id: the client's `X-Request-Id` when it is well-formed (1 to 64 of
/// `A-Z a-z 0-9 . _ -`), else a new one. It goes in the log and to the upstream. Held inline:
/// naming a request allocates nothing.
#[derive(Clone, Copy)]
pub struct RequestId {
    bytes: [u8; 64],
    len: u8,
}

impl RequestId {
    pub fn for_request(headers: &HeaderMap) -> RequestId {
        let given = headers
            .get("x-request-id")
            .map(|v| v.as_bytes())
            .filter(|v| {
                (1..=64).contains(&v.len())
                    && v.iter()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            });
        match given {
            Some(given) => {
                let mut bytes = [0; 64];
                bytes[..given.len()].copy_from_slice(given);
                RequestId {
                    bytes,
                    len: given.len() as u8,
                }
            }
            None => RequestId::new(),
        }
    }

    /// A new id: a random 64-bit number chosen at startup, and a counter.
    pub fn new() -> RequestId {
        static PROCESS: OnceLock<u64> = OnceLock::new();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let process = *PROCESS.get_or_init(|| {
            std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish()
        });
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut bytes = [0; 64];
        for (i, word) in [process, count].into_iter().enumerate() {
            for j in 0..16 {
                bytes[i * 16 + j] = HEX[((word >> (60 - 4 * j)) & 0xf) as usize];
            }
        }
        RequestId { bytes, len: 32 }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII was ever put in.
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("-")
    }
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_id_is_kept_only_when_well_formed() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            let value = http::HeaderValue::from_bytes(value.as_bytes()).unwrap();
            headers.insert("x-request-id", value);
            RequestId::for_request(&headers).as_str().to_owned()
        };
        assert_eq!(with("abc-123_X.y"), "abc-123_X.y");
        for bad in ["a b", "x\"y", &"a".repeat(65), "é"] {
            let id = with(bad);
            assert_ne!(id, bad);
            assert_eq!(id.len(), 32);
        }
        assert_ne!(RequestId::new().as_str(), RequestId::new().as_str());
    }
}
