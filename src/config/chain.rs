//! Credentials from the AWS default provider chain (`aws-config`): environment, shared profile
//! files, web identity (IRSA), ECS container credentials, EC2 IMDSv2. Asked when a config is
//! loaded, by the server's refresher, and by offload before it walks.

use std::time::Duration;

use aws_credential_types::provider::ProvideCredentials;

use crate::s3::sigv4::Keys;

/// How long `check`, `explain` and startup wait for the provider chain: its network providers
/// (instance metadata, container credentials, STS) can each wait on an endpoint that never
/// answers.
pub const CHAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
        .map_err(|e| crate::error_chain(&e))?;
    Ok(Keys::new(
        creds.access_key_id(),
        creds.secret_access_key(),
        creds.session_token().map(str::to_owned),
        creds.expiry(),
        "aws provider chain",
    ))
}

/// Fetches from the chain from synchronous code (config loading, before the server starts),
/// giving up after [`CHAIN_TIMEOUT`].
pub fn fetch_from_chain_blocking(region: &str) -> Result<Keys, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start a runtime to fetch credentials: {e}"))?;
    runtime.block_on(fetch_from_chain_within(region))
}

/// [`fetch_from_chain`], giving up after [`CHAIN_TIMEOUT`].
pub async fn fetch_from_chain_within(region: &str) -> Result<Keys, String> {
    tokio::time::timeout(CHAIN_TIMEOUT, fetch_from_chain(region))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer within {}s from a provider that asks over the network (instance metadata, container credentials or STS)",
                CHAIN_TIMEOUT.as_secs()
            ))
        })
}
