//! Requests per client to the upstream: `requests` per `per` on average, up to `burst` at
//! once, as a token bucket (the generic cell rate algorithm: one timestamp per client, no
//! timer, no lock).
//!
//! Why not `pingora-limits`: its `Rate` counts events per fixed window and its `Inflight`
//! counts what is in flight; neither says "20 a second, 40 at once". The state here is a fixed
//! table of atomic timestamps indexed by a hash of the client's address: bounded memory
//! (`SLOTS` × 8 bytes per route) whatever the number of clients. Two clients that share a slot
//! share a budget, which errs on the strict side, never the lenient one.

use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Buckets per limit: 512 KiB.
pub const SLOTS: usize = 1 << 16;

/// `rate:` compiled.
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
    pub burst: u32,
    /// Nanoseconds one request uses of the budget (`per / requests`).
    emission: u64,
    /// How far ahead of now a client's budget may be spent (`(burst - 1) × emission`).
    tolerance: u64,
    /// Per slot: when the client's budget is next wholly free (nanoseconds since `epoch`),
    /// the "theoretical arrival time".
    slots: Box<[AtomicU64]>,
    epoch: Instant,
    hasher: std::collections::hash_map::RandomState,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("requests", &self.requests)
            .field("per", &self.per)
            .field("burst", &self.burst)
            .finish_non_exhaustive()
    }
}

impl RateLimit {
    /// `requests` per `per`, `burst` at once (both at least 1, `per` at least a millisecond:
    /// the config checks).
    pub fn new(requests: u32, per: Duration, burst: u32) -> RateLimit {
        let per_nanos = u64::try_from(per.as_nanos()).unwrap_or(u64::MAX);
        let emission = (per_nanos / u64::from(requests.max(1))).max(1);
        RateLimit {
            requests,
            per,
            burst,
            emission,
            tolerance: emission.saturating_mul(u64::from(burst.max(1) - 1)),
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            epoch: Instant::now(),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// Takes one request from `key`'s budget at `now`, or says how long until there is one.
    pub fn check(&self, key: &impl Hash, now: Instant) -> Result<(), Duration> {
        let slot = &self.slots[(self.hasher.hash_one(key) as usize) % SLOTS];
        let t =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let mut tat = slot.load(Ordering::Acquire);
        loop {
            // A budget last used long ago (or never: 0) starts from now.
            let from = tat.max(t);
            let ahead = from - t;
            if ahead > self.tolerance {
                return Err(Duration::from_nanos(ahead - self.tolerance));
            }
            let next = from.saturating_add(self.emission);
            match slot.compare_exchange_weak(tat, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return Ok(()),
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_gets_its_burst_at_once_then_the_rate() {
        let limit = RateLimit::new(20, Duration::from_secs(1), 40);
        let start = Instant::now();
        let taken = (0..100)
            .filter(|_| limit.check(&"a", start).is_ok())
            .count();
        assert_eq!(taken, 40, "the burst, at once");
        let wait = limit.check(&"a", start).expect_err("then refused");
        assert_eq!(wait, Duration::from_millis(50), "until the next one is due");
        // 50 ms later one more, and per second after that, 20.
        assert!(limit.check(&"a", start + Duration::from_millis(50)).is_ok());
        assert!(limit
            .check(&"a", start + Duration::from_millis(50))
            .is_err());
        let later = start + Duration::from_millis(1050);
        let in_a_second = (0..100)
            .filter(|_| limit.check(&"a", later).is_ok())
            .count();
        assert_eq!(in_a_second, 20);
        // Another client has its own budget.
        assert!(limit.check(&"b", start).is_ok());
    }

    #[test]
    fn an_idle_client_gets_no_more_than_its_burst_back() {
        let limit = RateLimit::new(10, Duration::from_secs(1), 5);
        let start = Instant::now();
        assert_eq!(
            (0..50)
                .filter(|_| limit.check(&1u32, start).is_ok())
                .count(),
            5
        );
        let an_hour_later = start + Duration::from_secs(3600);
        let taken = (0..50)
            .filter(|_| limit.check(&1u32, an_hour_later).is_ok())
            .count();
        assert_eq!(taken, 5, "idle time saves no more than the burst");
    }
}
