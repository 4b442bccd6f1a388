//! What a route (or, outside routes, the default upstream) lets through to the legacy
//! application: request bodies up to a size, requests per client up to a rate, requests in
//! flight up to a count. A slow app behind a fast proxy is protected by refusing early (413,
//! 429, 503) rather than queueing.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::rate::RateLimit;

/// The limits of one route, or of the default upstream, with the count they keep.
#[derive(Debug, Default)]
pub struct UpstreamLimits {
    /// Larger request bodies are refused with 413 before they are read.
    pub max_body: Option<u64>,
    /// Requests to the upstream at once; more are refused with 503.
    pub max_inflight: Option<usize>,
    /// Requests per client; more are refused with 429.
    pub rate: Option<RateLimit>,
    inflight: AtomicUsize,
}

/// Why a request was not sent upstream (the `reason` of its log line and metric).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Limited {
    #[error("max_body")]
    Body,
    #[error("max_inflight")]
    Inflight,
    /// Over the client's rate; its next request is due after this long.
    #[error("rate")]
    Rate(Duration),
}

impl Limited {
    pub fn status(self) -> http::StatusCode {
        match self {
            Limited::Body => http::StatusCode::PAYLOAD_TOO_LARGE,
            Limited::Inflight => http::StatusCode::SERVICE_UNAVAILABLE,
            Limited::Rate(_) => http::StatusCode::TOO_MANY_REQUESTS,
        }
    }

    /// `Retry-After` for a refusal the client may try again soon.
    pub fn retry_after(self) -> Option<(&'static str, &'static str)> {
        match self {
            Limited::Body => None,
            Limited::Inflight => Some(("Retry-After", "1")),
            Limited::Rate(wait) => Some(("Retry-After", whole_seconds_up(wait))),
        }
    }
}

/// `Retry-After` for a wait, rounded up to 1, 2, 5, 10, 30 or 60 seconds (a client asked to
/// come back a little late loses nothing; one asked too early is refused again).
fn whole_seconds_up(wait: Duration) -> &'static str {
    match wait.as_secs_f64() {
        w if w <= 1.0 => "1",
        w if w <= 2.0 => "2",
        w if w <= 5.0 => "5",
        w if w <= 10.0 => "10",
        w if w <= 30.0 => "30",
        _ => "60",
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
    pub fn new(
        max_body: Option<u64>,
        max_inflight: Option<usize>,
        rate: Option<RateLimit>,
    ) -> UpstreamLimits {
        UpstreamLimits {
            max_body,
            max_inflight,
            rate,
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

    /// Takes a request from `client`'s rate (when known) and counts it in flight, or refuses
    /// it. Unlimited: nothing is kept (nothing to pay for a limit nobody set).
    pub fn admit(
        self: &Arc<Self>,
        client: Option<IpAddr>,
        now: Instant,
    ) -> Result<Admitted, Limited> {
        if let (Some(rate), Some(client)) = (&self.rate, client) {
            rate.check(&client, now).map_err(Limited::Rate)?;
        }
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
        let limits = Arc::new(UpstreamLimits::new(None, Some(2), None));
        let first = limits.admit(None, Instant::now()).expect("first");
        let second = limits.admit(None, Instant::now()).expect("second");
        assert_eq!(
            limits.admit(None, Instant::now()).err(),
            Some(Limited::Inflight)
        );
        drop(first);
        let third = limits.admit(None, Instant::now()).expect("room again");
        assert_eq!(limits.inflight(), 2);
        drop((second, third));
        assert_eq!(limits.inflight(), 0);
        let unlimited = Arc::new(UpstreamLimits::default());
        let many: Vec<_> = (0..1000)
            .map(|_| unlimited.admit(None, Instant::now()).expect("no limit"))
            .collect();
        assert_eq!((many.len(), unlimited.inflight()), (1000, 0));
    }

    #[test]
    fn a_client_over_its_rate_is_told_when_to_come_back() {
        let rate = RateLimit::new(1, Duration::from_secs(3), 2);
        let limits = Arc::new(UpstreamLimits::new(None, None, Some(rate)));
        let (now, client) = (Instant::now(), Some(IpAddr::from([192, 0, 2, 1])));
        assert!(limits.admit(client, now).is_ok() && limits.admit(client, now).is_ok());
        let refused = limits.admit(client, now).expect_err("over the burst");
        assert_eq!(refused, Limited::Rate(Duration::from_secs(3)));
        assert_eq!(refused.retry_after(), Some(("Retry-After", "5")));
        assert_eq!(refused.status(), http::StatusCode::TOO_MANY_REQUESTS);
        assert!(limits
            .admit(Some(IpAddr::from([192, 0, 2, 2])), now)
            .is_ok());
    }

    #[test]
    fn a_body_over_max_body_is_refused() {
        let limits = UpstreamLimits::new(Some(10), None, None);
        assert_eq!(limits.body_allowed(10), Ok(()));
        assert_eq!(limits.body_allowed(11), Err(Limited::Body));
        assert_eq!(UpstreamLimits::default().body_allowed(u64::MAX), Ok(()));
    }
}
