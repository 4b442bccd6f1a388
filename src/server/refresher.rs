//! The background service that keeps chain credentials fresh, well before they expire, and
//! at once when a request found them too close to expiry.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::config::chain::fetch_from_chain;
use crate::s3::credentials::{CredentialCell, EXPIRY_MARGIN};

/// If a refresh fails, try again this soon (the old credentials stay in use while valid).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// When to refresh keys that expire at `expiry`: early enough that a link signed just before
/// can still live its full `longest_ttl`.
pub fn refresh_due(expiry: SystemTime, longest_ttl: Duration) -> SystemTime {
    let lead = longest_ttl + EXPIRY_MARGIN + Duration::from_secs(300);
    expiry.checked_sub(lead).unwrap_or(SystemTime::UNIX_EPOCH)
}

/// A Pingora background service that keeps chain credentials fresh.
pub struct Refresher {
    pub cell: Arc<CredentialCell>,
    /// For the chain's own calls; see `fetch_from_chain`.
    pub region: String,
    /// The longest presigned-link lifetime any route asks of these credentials.
    pub longest_ttl: Duration,
}

impl Refresher {
    fn next_refresh(&self, now: SystemTime) -> Option<Duration> {
        let expiry = self.cell.current().and_then(|k| k.expiry)?;
        let due = refresh_due(expiry, self.longest_ttl);
        Some(
            due.duration_since(now)
                .unwrap_or(Duration::ZERO)
                .max(Duration::from_secs(1)),
        )
    }

    async fn refresh(&self) -> Option<Duration> {
        match fetch_from_chain(&self.region).await {
            Ok(keys) => {
                tracing::info!(access_key_id = %keys.access_key_id, expiry = ?keys.expiry, "credentials refreshed");
                self.cell.set(keys);
                self.next_refresh(SystemTime::now())
            }
            Err(e) => {
                let valid_until = self.cell.current().and_then(|k| k.expiry);
                tracing::error!(
                    ?valid_until,
                    "CREDENTIAL REFRESH FAILED: {e}; keeping the current credentials while they are valid, retrying in {}s",
                    RETRY_AFTER_FAILURE.as_secs()
                );
                Some(RETRY_AFTER_FAILURE)
            }
        }
    }
}

#[async_trait]
impl BackgroundService for Refresher {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut wait = self.next_refresh(SystemTime::now());
        loop {
            // Long-term keys (no expiry) only refresh when a request asks.
            let sleep = tokio::time::sleep(wait.unwrap_or(Duration::from_secs(365 * 24 * 3600)));
            tokio::select! {
                _ = sleep => {}
                _ = self.cell.refresh_requested() => {}
                _ = shutdown.changed() => return,
            }
            wait = self.refresh().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_leaves_room_for_the_longest_link() {
        let expiry = SystemTime::UNIX_EPOCH + Duration::from_secs(10_000);
        let due = refresh_due(expiry, Duration::from_secs(600));
        assert_eq!(
            expiry.duration_since(due).unwrap(),
            Duration::from_secs(600 + 60 + 300)
        );
    }
}
