//! One bucket as a run talks to it: the SDK client, where it is (for messages), and what the
//! store turned out to accept. Routes that share a bucket share this.

use std::sync::atomic::{AtomicBool, Ordering};

use aws_sdk_s3::Client;

use crate::config::chain::fetch_from_chain_within;
use crate::offload::client;
use crate::s3::Bucket;

pub struct Store {
    pub client: Client,
    /// The bucket's name in the store.
    pub bucket: String,
    /// Where requests go, as an operator would recognise it.
    pub endpoint: String,
    /// Set once the store refused the `x-amz-checksum-*` headers: uploads then carry
    /// `Content-MD5` only, and the ETag the store computes is the evidence.
    md5_only: AtomicBool,
}

#[derive(Debug, thiserror::Error)]
#[error("no credentials to upload to bucket {bucket} ({config_name} in the config): the AWS provider chain found none ({detail}). Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in offload's environment, add `credentials:` to buckets.{config_name}, or run it where a role provides them (instance profile, IRSA, ECS task role)")]
pub struct NoCredentials {
    pub bucket: String,
    pub config_name: String,
    pub detail: String,
}

impl Store {
    /// A client for `bucket`, once its credentials are known to exist: a run without any
    /// says so once, before it walks, instead of failing every file.
    pub async fn connect(config_name: &str, bucket: &Bucket) -> Result<Store, NoCredentials> {
        if bucket.credentials().from_chain() {
            if let Err(detail) = fetch_from_chain_within(bucket.region()).await {
                // The chain lists what it tried on lines of their own: one line here.
                let detail: Vec<&str> = detail
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .collect();
                return Err(NoCredentials {
                    bucket: bucket.name().to_owned(),
                    config_name: config_name.to_owned(),
                    detail: detail.join(" "),
                });
            }
        }
        Ok(Store {
            client: client::client(bucket).await,
            bucket: bucket.name().to_owned(),
            endpoint: bucket
                .client_addressing()
                .endpoint
                .clone()
                .unwrap_or_else(|| bucket.base_url()),
            md5_only: AtomicBool::new(false),
        })
    }

    /// Whether uploads leave out the additional checksum headers.
    pub fn md5_only(&self) -> bool {
        self.md5_only.load(Ordering::Relaxed)
    }

    /// The store refused the checksum headers: from now on, `Content-MD5` only. True the first
    /// time, so the caller says it once.
    pub fn fall_back_to_md5(&self) -> bool {
        !self.md5_only.swap(true, Ordering::Relaxed)
    }
}
