//! Signing credentials: where they come from, and keeping them fresh off the request path.
//!
//! A bucket either has explicit keys in `proxy.yaml` (with `${VAR}` expansion) or uses the
//! standard AWS provider chain through `aws-config`: environment, shared profile files, web
//! identity (IRSA), ECS container credentials, EC2 IMDSv2. Chain credentials are fetched once at
//! startup, then refreshed by a background task well before they expire. Requests read the
//! current keys with one atomic load: no lock, no await.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use aws_credential_types::provider::ProvideCredentials;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use tokio::sync::Notify;

use crate::sigv4::Keys;

/// Presigned links must end at least this long before the credentials that signed them do,
/// for clock skew and for the time between the redirect and its use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// If a refresh fails, try again this soon (the old credentials stay in use while valid).
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(30);

/// The current credentials of a bucket, swapped atomically when refreshed.
#[derive(Debug, Default)]
pub struct CredentialCell {
    current: ArcSwapOption<Keys>,
    /// Woken by a request that found the credentials too close to expiry.
    refresh_now: Notify,
}

impl CredentialCell {
    pub fn with(keys: Keys) -> CredentialCell {
        CredentialCell {
            current: ArcSwapOption::new(Some(Arc::new(keys))),
            refresh_now: Notify::new(),
        }
    }

    /// The current keys: one atomic load.
    pub fn current(&self) -> Option<Arc<Keys>> {
        self.current.load_full()
    }

    pub fn set(&self, keys: Keys) {
        self.current.store(Some(Arc::new(keys)));
    }

    /// Asks the background refresher to refresh now. Never blocks.
    pub fn request_refresh(&self) {
        self.refresh_now.notify_one();
    }
}

/// Fetches credentials from the AWS default provider chain. `region` is used for the chain's
/// own calls (STS for web identity) unless AWS_REGION says otherwise; without one the chain
/// would first ask instance metadata for a region.
pub async fn fetch_from_chain(region: &str) -> Result<Keys, String> {
    let region = std::env::var("AWS_REGION")
        .or_else(|_| std::env::var("AWS_DEFAULT_REGION"))
        .unwrap_or_else(|_| region.to_owned());
    let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
        .region(aws_config::Region::new(region))
        .build()
        .await;
    let creds = chain
        .provide_credentials()
        .await
        .map_err(|e| aws_smithy_types_error_text(&e))?;
    Ok(Keys::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().map(str::to_owned),
        creds.expiry(),
        "aws provider chain",
    ))
}

/// The full error chain, which is where aws-config puts the useful part ("no profile file",
/// "IMDS disabled", ...).
fn aws_smithy_types_error_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Fetches from the chain from synchronous code (config loading, before the server starts).
pub fn fetch_from_chain_blocking(region: &str) -> Result<Keys, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to fetch credentials: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(15), fetch_from_chain(region))
            .await
            .unwrap_or_else(|_| Err("timed out after 15s".to_owned()))
    })
}

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
                _ = self.cell.refresh_now.notified() => {}
                _ = shutdown.changed() => return,
            }
            wait = self.refresh().await;
        }
    }
}

/// Expands `${NAME}` in a configured value from the environment, so secrets need not sit in the
/// YAML. A missing variable is an error naming it; `$$` is a literal `$`.
pub fn expand(value: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('{') {
            let end = inner
                .find('}')
                .ok_or_else(|| format!("unclosed ${{ in {value:?}"))?;
            let name = &inner[..end];
            let found =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&found);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_environment_references() {
        let env = |name: &str| (name == "SECRET").then(|| "s3cr3t".to_owned());
        assert_eq!(expand("${SECRET}", &env), Ok("s3cr3t".into()));
        assert_eq!(expand("a-${SECRET}-b", &env), Ok("a-s3cr3t-b".into()));
        assert_eq!(expand("plain$value", &env), Ok("plain$value".into()));
        assert_eq!(expand("$${SECRET}", &env), Ok("${SECRET}".into()));
        assert_eq!(
            expand("${MISSING}", &env),
            Err("environment variable MISSING is not set".into())
        );
        assert!(expand("${SECRET", &env).is_err());
    }

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
