//! Signing credentials: the cell requests read them from, and the AWS provider chain.
//!
//! A bucket either has explicit keys in `proxy.yaml` or uses the standard AWS provider chain
//! through `aws-config`: environment, shared profile files, web identity (IRSA), ECS container
//! credentials, EC2 IMDSv2. Chain credentials are fetched once at startup, then kept fresh by
//! the server's refresher (`server::refresher`). Requests read the current keys with one atomic
//! load: no lock, no await.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use aws_credential_types::provider::ProvideCredentials;
use tokio::sync::Notify;

use crate::s3::sigv4::Keys;

/// Presigned links must end at least this long before the credentials that signed them do,
/// for clock skew and for the time between the redirect and its use.
pub const EXPIRY_MARGIN: Duration = Duration::from_secs(60);

/// How long `check`, `explain` and startup wait for the provider chain: its network providers
/// (instance metadata, container credentials, STS) can each wait on an endpoint that never
/// answers.
pub const CHAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The current credentials of a bucket, swapped atomically when refreshed.
#[derive(Debug, Default)]
pub struct CredentialCell {
    current: ArcSwapOption<Keys>,
    /// Woken by a request that found the credentials too close to expiry.
    refresh_now: Notify,
    /// Filled (and refreshed) from the AWS provider chain rather than `proxy.yaml`.
    from_chain: bool,
}

impl CredentialCell {
    /// Keys written in `proxy.yaml`: they never change.
    pub fn with(keys: Keys) -> CredentialCell {
        CredentialCell {
            current: ArcSwapOption::new(Some(Arc::new(keys))),
            refresh_now: Notify::new(),
            from_chain: false,
        }
    }

    /// An empty cell for credentials from the AWS provider chain.
    pub fn for_chain() -> CredentialCell {
        CredentialCell {
            from_chain: true,
            ..CredentialCell::default()
        }
    }

    pub fn from_chain(&self) -> bool {
        self.from_chain
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

    /// Resolves when a refresh has been asked for.
    pub async fn refresh_requested(&self) {
        self.refresh_now.notified().await;
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
        .map_err(|e| error_chain_text(&e))?;
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
fn error_chain_text(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Fetches from the chain from synchronous code (config loading, before the server starts),
/// giving up after [`CHAIN_TIMEOUT`].
pub fn fetch_from_chain_blocking(region: &str) -> Result<Keys, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to fetch credentials: {e}"))?;
    runtime.block_on(async {
        tokio::time::timeout(CHAIN_TIMEOUT, fetch_from_chain(region))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer within {}s from a provider that asks over the network (instance metadata, container credentials or STS)",
                    CHAIN_TIMEOUT.as_secs()
                ))
            })
    })
}
