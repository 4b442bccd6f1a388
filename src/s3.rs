//! S3 object URLs and SigV4 query-string presigning.
//!
//! URLs are built from configuration only (never from the request's `Host`). The key is
//! percent-encoded exactly once, the S3 way: every byte except `A-Z a-z 0-9 - . _ ~ /`. aws-sigv4
//! is told to sign that path as given (single encoding, no normalisation), so `+`, spaces, `//`
//! and a trailing `/` reach S3 as the same key that was signed.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Bytes that stay literal in an S3 key path.
const KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// Bytes that stay literal in a query-string value (the key set without `/`).
const QUERY: &AsciiSet = &KEY.add(b'/');

/// SigV4 allows presigned URLs to live at most seven days.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("bucket name {0:?} must be 1-63 characters of a-z, 0-9, '.', '-' or '_'")]
    BadName(String),
    #[error("region {0:?} must be non-empty and made of a-z, 0-9 and '-'")]
    BadRegion(String),
    #[error("endpoint {0:?} must be an absolute http:// or https:// URL with no path, e.g. http://127.0.0.1:9000")]
    BadEndpoint(String),
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("bucket has no credentials to sign with")]
    NoCredentials,
    #[error("presigning failed: {0}")]
    Sign(String),
}

/// A bucket as the server reaches it: where its objects live and how to sign for them.
#[derive(Debug)]
pub struct Bucket {
    name: String,
    region: String,
    /// Everything before the key, ending in `/`: `https://b.s3.eu-west-1.amazonaws.com/` or
    /// `http://127.0.0.1:9000/b/`.
    base_url: String,
    identity: Option<Identity>,
    access_key_id: Option<String>,
}

impl Bucket {
    /// `path_style: None` means: path-style for custom endpoints (what MinIO and most
    /// S3-compatible servers expect) and for AWS bucket names with dots (they break the
    /// wildcard TLS certificate of virtual-hosted URLs); virtual-hosted otherwise.
    pub fn new(
        name: &str,
        region: &str,
        endpoint: Option<&str>,
        path_style: Option<bool>,
        credentials: Option<Credentials>,
    ) -> Result<Bucket, BucketError> {
        let valid_name = (1..=63).contains(&name.len())
            && name
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'-' | b'_'));
        if !valid_name {
            return Err(BucketError::BadName(name.to_owned()));
        }
        let valid_region = !region.is_empty()
            && region
                .bytes()
                .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-'));
        if !valid_region {
            return Err(BucketError::BadRegion(region.to_owned()));
        }
        let base_url = match endpoint {
            None => {
                if path_style.unwrap_or(name.contains('.')) {
                    format!("https://s3.{region}.amazonaws.com/{name}/")
                } else {
                    format!("https://{name}.s3.{region}.amazonaws.com/")
                }
            }
            Some(endpoint) => {
                let (scheme, authority) = parse_endpoint(endpoint)
                    .ok_or_else(|| BucketError::BadEndpoint(endpoint.to_owned()))?;
                if path_style.unwrap_or(true) {
                    format!("{scheme}://{authority}/{name}/")
                } else {
                    format!("{scheme}://{name}.{authority}/")
                }
            }
        };
        let access_key_id = credentials.as_ref().map(|c| c.access_key_id().to_owned());
        Ok(Bucket {
            name: name.to_owned(),
            region: region.to_owned(),
            base_url,
            identity: credentials.map(Identity::from),
            access_key_id,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The access key id (never the secret), for `spillway check`.
    pub fn access_key_id(&self) -> Option<&str> {
        self.access_key_id.as_deref()
    }

    pub fn can_sign(&self) -> bool {
        self.identity.is_some()
    }

    /// The unsigned URL of `key_prefix + relative`.
    pub fn object_url(&self, key_prefix: &str, relative: &str) -> String {
        let mut url =
            String::with_capacity(self.base_url.len() + 3 * (key_prefix.len() + relative.len()));
        url.push_str(&self.base_url);
        url.extend(utf8_percent_encode(key_prefix, KEY));
        url.extend(utf8_percent_encode(relative, KEY));
        url
    }

    /// `object_url` presigned for `method` (GET or HEAD), valid from `now` for `ttl`.
    pub fn presign(
        &self,
        method: &str,
        object_url: String,
        now: SystemTime,
        ttl: Duration,
    ) -> Result<String, SignError> {
        let identity = self.identity.as_ref().ok_or(SignError::NoCredentials)?;
        let mut settings = SigningSettings::default();
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(ttl.min(MAX_TTL));
        let params = v4::SigningParams::builder()
            .identity(identity)
            .region(&self.region)
            .name("s3")
            .time(now)
            .settings(settings)
            .build()
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into();
        let request = SignableRequest::new(
            method,
            object_url.as_str(),
            std::iter::empty(),
            SignableBody::UnsignedPayload,
        )
        .map_err(|e| SignError::Sign(e.to_string()))?;
        let (instructions, _signature) = sign(request, &params)
            .map_err(|e| SignError::Sign(e.to_string()))?
            .into_parts();
        let mut url = object_url;
        for (i, (name, value)) in instructions.params().iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            // Writing to a String cannot fail.
            let _ = write!(url, "{name}={}", utf8_percent_encode(value, QUERY));
        }
        Ok(url)
    }
}

/// Splits `http(s)://authority[/]` into its scheme and authority.
fn parse_endpoint(endpoint: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = endpoint.split_once("://")?;
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    let uri: http::Uri = endpoint.parse().ok()?;
    let plain = uri.host().is_some_and(|h| !h.is_empty())
        && uri.query().is_none()
        && !authority.contains(['/', '@', '?', '#']);
    plain.then_some((scheme, authority))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(endpoint: Option<&str>, path_style: Option<bool>) -> Bucket {
        Bucket::new("media", "eu-west-1", endpoint, path_style, None).unwrap()
    }

    #[test]
    fn endpoint_styles() {
        let cases = [
            (None, None, "https://media.s3.eu-west-1.amazonaws.com/"),
            (
                None,
                Some(true),
                "https://s3.eu-west-1.amazonaws.com/media/",
            ),
            (
                Some("http://127.0.0.1:9000"),
                None,
                "http://127.0.0.1:9000/media/",
            ),
            (
                Some("http://127.0.0.1:9000/"),
                None,
                "http://127.0.0.1:9000/media/",
            ),
            (
                Some("https://s3.local:9000"),
                Some(false),
                "https://media.s3.local:9000/",
            ),
        ];
        for (endpoint, style, want) in cases {
            assert_eq!(
                bucket(endpoint, style).base_url(),
                want,
                "{endpoint:?} {style:?}"
            );
        }
        let dotted = Bucket::new("my.media", "us-east-1", None, None, None).unwrap();
        assert_eq!(
            dotted.base_url(),
            "https://s3.us-east-1.amazonaws.com/my.media/",
            "dots force path-style"
        );
    }

    #[test]
    fn bad_buckets_are_refused() {
        assert!(matches!(
            Bucket::new("Media", "us-east-1", None, None, None),
            Err(BucketError::BadName(_))
        ));
        assert!(matches!(
            Bucket::new("m", "", None, None, None),
            Err(BucketError::BadRegion(_))
        ));
        for endpoint in [
            "127.0.0.1:9000",
            "ftp://x",
            "http://x/path",
            "http://",
            "http://u@x",
        ] {
            assert!(
                matches!(
                    Bucket::new("m", "r", Some(endpoint), None, None),
                    Err(BucketError::BadEndpoint(_))
                ),
                "endpoint {endpoint:?}"
            );
        }
    }

    #[test]
    fn keys_are_encoded_once_the_s3_way() {
        let b = bucket(Some("http://s3.test"), None);
        let cases = [
            ("a.jpg", "http://s3.test/media/up/a.jpg"),
            ("a b+c.jpg", "http://s3.test/media/up/a%20b%2Bc.jpg"),
            ("100%/x~y_z-w", "http://s3.test/media/up/100%25/x~y_z-w"),
            ("dir//x/", "http://s3.test/media/up/dir//x/"),
            ("café", "http://s3.test/media/up/caf%C3%A9"),
            (
                "(!*'@$&=;:,?#)",
                "http://s3.test/media/up/%28%21%2A%27%40%24%26%3D%3B%3A%2C%3F%23%29",
            ),
        ];
        for (relative, want) in cases {
            assert_eq!(b.object_url("up/", relative), want, "key {relative:?}");
        }
    }

    #[test]
    fn presigned_url_carries_the_sigv4_query() {
        let creds = Credentials::new(
            "AKIDEXAMPLE",
            "secret",
            Some("tok/en+=".into()),
            None,
            "test",
        );
        let b = Bucket::new(
            "media",
            "us-east-1",
            Some("http://127.0.0.1:9000"),
            None,
            Some(creds),
        )
        .unwrap();
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let url = b
            .presign(
                "GET",
                b.object_url("", "a b.jpg"),
                at,
                Duration::from_secs(300),
            )
            .unwrap();
        assert!(
            url.starts_with(
                "http://127.0.0.1:9000/media/a%20b.jpg?X-Amz-Algorithm=AWS4-HMAC-SHA256&"
            ),
            "{url}"
        );
        for part in [
            "X-Amz-Credential=AKIDEXAMPLE%2F20231114%2Fus-east-1%2Fs3%2Faws4_request",
            "X-Amz-Date=20231114T221320Z",
            "X-Amz-Expires=300",
            "X-Amz-SignedHeaders=host",
            "X-Amz-Security-Token=tok%2Fen%2B%3D",
            "X-Amz-Signature=",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
        let again = b
            .presign(
                "GET",
                b.object_url("", "a b.jpg"),
                at,
                Duration::from_secs(300),
            )
            .unwrap();
        assert_eq!(url, again, "signing is deterministic for a fixed time");
        let head = b
            .presign(
                "HEAD",
                b.object_url("", "a b.jpg"),
                at,
                Duration::from_secs(300),
            )
            .unwrap();
        assert_ne!(url, head, "the method is part of the signature");
        assert!(matches!(
            bucket(None, None).presign("GET", String::new(), at, Duration::from_secs(1)),
            Err(SignError::NoCredentials)
        ));
    }
}
