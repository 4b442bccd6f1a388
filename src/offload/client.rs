//! The S3 client offload uploads with: the official SDK (`aws-sdk-s3`), addressing the bucket
//! the way its URLs do and signing with the same credentials as the proxy.

use std::time::Duration;

use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::Client;

use crate::s3::Bucket;

/// Attempts per request, the first included: connection failures, 5xx and throttling are
/// retried with jittered exponential backoff; 4xx answers are not.
const ATTEMPTS: u32 = 5;

/// A client for `bucket`. Credentials: the keys in `proxy.yaml`, or the AWS provider chain
/// (which refreshes itself, so a long `--watch` outlives temporary credentials).
pub async fn client(bucket: &Bucket) -> Client {
    let addressing = bucket.client_addressing();
    let credentials = if bucket.credentials().from_chain() {
        let chain = aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
            .region(Region::new(bucket.region().to_owned()))
            .build()
            .await;
        SharedCredentialsProvider::new(chain)
    } else {
        let keys = bucket.credentials().current();
        SharedCredentialsProvider::new(Credentials::new(
            keys.as_ref().map_or("", |k| k.access_key_id.as_str()),
            keys.as_ref().map_or("", |k| k.secret_access_key()),
            keys.as_ref().and_then(|k| k.session_token.clone()),
            None,
            "proxy.yaml",
        ))
    };
    let mut config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(bucket.region().to_owned()))
        .credentials_provider(credentials)
        .force_path_style(addressing.path_style)
        .use_dual_stack(addressing.dualstack)
        .accelerate(addressing.accelerate)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .read_timeout(Duration::from_secs(60))
                .operation_attempt_timeout(Duration::from_secs(600))
                .build(),
        )
        // spillway sends the checksums it computed itself, as headers. Left to itself the SDK
        // adds a CRC32 trailer with aws-chunked encoding, which some servers store as the
        // object's Content-Encoding.
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired);
    if let Some(endpoint) = &addressing.endpoint {
        config = config.endpoint_url(endpoint);
    }
    Client::from_conf(config.build())
}
