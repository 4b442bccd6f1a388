//! What a route (or, outside routes, the default upstream) lets through to the legacy
//! application: request bodies up to a size, requests in flight up to a count. A slow app
//! behind a fast proxy is protected by refusing early (413, 503) rather than queueing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// The limits of one route, or of the default upstream, with the count they keep.
#[derive(Debug, Default)]
pub struct UpstreamLimits {
    /// Larger request bodies are refused with 413 before they are read.
    pub max_body: Option<u64>,
    /// Requests to the upstream at once; more are refused with 503.
    pub max_inflight: Option<usize>,
    inflight: AtomicUsize,
}

/// Why a request was not sent upstream (the `reason` of its log line and metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("max_body")]
    Body,
    #[error("max_inflight")]
    Inflight,
}

impl Limited {
    pub fn status(self) -> http::StatusCode {
        match self {
            Limited::Body => http::StatusCode::PAYLOAD_TOO_LARGE,
            Limited::Inflight => http::StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// `Retry-After` for a refusal the client may try again soon.
    pub fn retry_after(self) -> Option<(&'static str, &'static str)> {
        match self {
            Limited::Body => None,
            Limited::Inflight => Some(("Retry-After", "1")),
        }
    }
}

/// A request counted in flight until it is dropped.
#[derive(Debug)]
pub struct Admitted(Option<Arc<UpstreamLimits>>);

impl Drop for Admitted {
    fn drop(&mut self) {
        if let Some(limits) = &self.0 {
            limits.inflight.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl UpstreamLimits {
    pub fn new(max_body: Option<u64>, max_inflight: Option<usize>) -> UpstreamLimits {
        UpstreamLimits {
            max_body,
            max_inflight,
            inflight: AtomicUsize::new(0),
        }
    }

    /// Whether a body of `length` bytes may go upstream.
    pub fn body_allowed(&self, length: u64) -> Result<(), Limited> {
        match self.max_body {
            Some(max) if length > max => Err(Limited::Body),
            _ => Ok(()),
        }
    }

    /// Counts a request in flight, or refuses it when `max_inflight` are. Unlimited: no count
    /// is kept (nothing to pay for a limit nobody set).
    pub fn admit(self: &Arc<Self>) -> Result<Admitted, Limited> {
        let Some(max) = self.max_inflight else {
            return Ok(Admitted(None));
        };
        let admitted = self
            .inflight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            });
        match admitted {
            Ok(_) => Ok(Admitted(Some(Arc::clone(self)))),
            Err(_) => Err(Limited::Inflight),
        }
    }

    /// Requests in flight now (0 when unlimited: not counted).
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_flight_requests_are_admitted_up_to_the_limit_and_released_on_drop() {
        let limits = Arc::new(UpstreamLimits::new(None, Some(2)));
        let first = limits.admit().expect("first");
        let second = limits.admit().expect("second");
        assert_eq!(limits.admit().err(), Some(Limited::Inflight));
        drop(first);
        let third = limits.admit().expect("room again");
        assert_eq!(limits.inflight(), 2);
        drop((second, third));
        assert_eq!(limits.inflight(), 0);
        let unlimited = Arc::new(UpstreamLimits::default());
        let many: Vec<_> = (0..1000)
            .map(|_| unlimited.admit().expect("no limit"))
            .collect();
        assert_eq!((many.len(), unlimited.inflight()), (1000, 0));
    }

    #[test]
    fn a_body_over_max_body_is_refused() {
        let limits = UpstreamLimits::new(Some(10), None);
        assert_eq!(limits.body_allowed(10), Ok(()));
        assert_eq!(limits.body_allowed(11), Err(Limited::Body));
        assert_eq!(UpstreamLimits::default().body_allowed(u64::MAX), Ok(()));
    }
}
