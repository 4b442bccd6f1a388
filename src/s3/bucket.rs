//! S3 object URLs and presigned links: how a bucket is addressed, and the URL of a key in it.
//!
//! URLs are built from configuration and an [`ObjectKey`] only (never from the request's
//! `Host`); the key is percent-encoded exactly once, by `ObjectKey::push_encoded`.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::s3::cloudfront::CloudFront;
use crate::s3::credentials::{CredentialCell, EXPIRY_MARGIN};
use crate::s3::key::ObjectKey;
pub use crate::s3::signed_links::Signed;
use crate::s3::signed_links::{LinkFor, SignedLinks};
use crate::s3::sigv4::{self, Keys, Presign, QUERY_VALUE};

/// RFC 5987 `attr-char`: what may stay literal in `filename*=UTF-8''...`.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// SigV4 allows presigned URLs to live at most seven days.
pub const MAX_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// How a bucket is addressed.
#[derive(Debug, Clone, Default)]
pub struct Addressing<'a> {
    /// A custom endpoint (MinIO, Ceph, R2, ...); `None` is AWS.
    pub endpoint: Option<&'a str>,
    /// `None`: path-style for custom endpoints and for bucket names with dots (they break
    /// the wildcard TLS certificate of virtual-hosted URLs), virtual-hosted otherwise.
    pub path_style: Option<bool>,
    /// AWS dual-stack (IPv4 + IPv6) endpoints.
    pub dualstack: bool,
    /// S3 Transfer Acceleration (virtual-hosted only).
    pub accelerate: bool,
    /// Where public objects are linked instead of the S3 host (a CDN in front of the bucket).
    pub public_url: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BucketError {
    #[error("bucket name {0:?} must be 1-63 characters of a-z, 0-9, '.', '-' or '_'")]
    BadName(String),
    #[error("region {0:?} must be non-empty and made of a-z, 0-9 and '-'")]
    BadRegion(String),
    #[error("endpoint {0:?} must be an absolute http:// or https:// URL with no path, e.g. http://127.0.0.1:9000")]
    BadEndpoint(String),
    #[error("public_url {0:?} must be an absolute http:// or https:// URL")]
    BadPublicUrl(String),
    #[error("accelerate needs virtual-hosted addressing: not with path_style, a custom endpoint, or a bucket name with dots")]
    AccelerateNeedsVirtualHost,
    #[error("dualstack and accelerate apply to AWS only, not to a custom endpoint")]
    AwsOnly,
    #[error("virtual-hosted addressing (path_style: false) needs an endpoint with a host name, not an IP address")]
    VirtualHostNeedsName,
    #[error("signs links on `public_url`, which is not set: set it to the distribution's URL (like https://d111111abcdef8.cloudfront.net/media)")]
    CloudFrontNeedsPublicUrl,
}

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("bucket has no credentials to sign with")]
    NoCredentials,
    /// The credentials expire before a useful link could: they need a refresh.
    #[error("credentials expire too soon to sign a useful link (refresh requested)")]
    CredentialsExpiring,
    #[error("the CloudFront key {key_pair_id} could not sign a link: {reason}")]
    CloudFront { key_pair_id: String, reason: String },
}

/// A bucket as the server reaches it: where its objects live and how to sign for them.
#[derive(Debug)]
pub struct Bucket {
    name: String,
    region: String,
    /// `https://host[:port]`.
    origin: String,
    /// The `Host` S3 sees (the authority without a default port), for signing.
    host: String,
    /// `/` (virtual-hosted) or `/bucket/` (path-style).
    path_prefix: String,
    /// Public objects link here (ending in `/`) instead of `origin + path_prefix`.
    public_base: Option<String>,
    credentials: Arc<CredentialCell>,
    /// How an S3 client reaches the bucket (`offload`).
    client: ClientAddressing,
    /// Links already signed in the current second or window.
    links: SignedLinks,
    /// Private objects are signed for the CDN at `public_base` instead of presigned for S3.
    cloudfront: Option<CloudFront>,
}

/// What an S3 client needs to address a bucket the way its URLs do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientAddressing {
    /// A custom endpoint (`http(s)://host[:port]`); `None` is AWS.
    pub endpoint: Option<String>,
    pub path_style: bool,
    pub dualstack: bool,
    pub accelerate: bool,
}

impl Bucket {
    pub fn new(
        name: &str,
        region: &str,
        addressing: &Addressing,
        credentials: Arc<CredentialCell>,
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
        let (scheme, authority, path_style) = match addressing.endpoint {
            None => aws_endpoint(name, region, addressing)?,
            Some(endpoint) => custom_endpoint(endpoint, addressing)?,
        };
        let client = ClientAddressing {
            endpoint: addressing
                .endpoint
                .map(|_| format!("{scheme}://{authority}")),
            path_style,
            dualstack: addressing.dualstack,
            accelerate: addressing.accelerate,
        };
        let (authority, path_prefix) = if path_style {
            (authority, format!("/{name}/"))
        } else {
            (format!("{name}.{authority}"), "/".to_owned())
        };
        let public_base = addressing.public_url.map(public_base).transpose()?;
        Ok(Bucket {
            name: name.to_owned(),
            region: region.to_owned(),
            host: host_header(scheme, &authority),
            origin: format!("{scheme}://{authority}"),
            path_prefix,
            public_base,
            credentials,
            client,
            links: SignedLinks::default(),
            cloudfront: None,
        })
    }

    /// Signs private links for CloudFront at `public_url` (which it needs) from now on.
    pub fn with_cloudfront(mut self, signer: CloudFront) -> Result<Bucket, BucketError> {
        if self.public_base.is_none() {
            return Err(BucketError::CloudFrontNeedsPublicUrl);
        }
        self.cloudfront = Some(signer);
        Ok(self)
    }

    /// The CloudFront signer, if private links go through the CDN.
    pub fn cloudfront(&self) -> Option<&CloudFront> {
        self.cloudfront.as_ref()
    }

    /// How an S3 client reaches this bucket.
    pub fn client_addressing(&self) -> &ClientAddressing {
        &self.client
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Everything before the key in a signed URL.
    pub fn base_url(&self) -> String {
        format!("{}{}", self.origin, self.path_prefix)
    }

    /// Everything before the key in a public URL.
    pub fn public_base_url(&self) -> String {
        self.public_base.clone().unwrap_or_else(|| self.base_url())
    }

    pub fn credentials(&self) -> &Arc<CredentialCell> {
        &self.credentials
    }

    /// The unsigned URL of `key` (through `public_url` when set).
    pub fn public_url(&self, key: &ObjectKey) -> String {
        let base = self.public_base.as_deref();
        let mut url = String::with_capacity(
            base.map_or(self.origin.len() + self.path_prefix.len(), str::len)
                + key.encoded_len_bound(),
        );
        match base {
            Some(base) => url.push_str(base),
            None => {
                url.push_str(&self.origin);
                url.push_str(&self.path_prefix);
            }
        }
        key.push_encoded(&mut url);
        url
    }

    /// A link to `key` for `method` (GET or HEAD), signed at `time` and valid for `ttl`,
    /// shortened to what the credentials can cover. With `attachment`, the link makes S3
    /// answer with `Content-Disposition: attachment` and the file name.
    pub fn presign(
        &self,
        method: &str,
        key: &ObjectKey,
        time: SystemTime,
        ttl: Duration,
        attachment: bool,
    ) -> Result<Signed, SignError> {
        let asked = LinkFor {
            method,
            attachment,
            time,
            ttl,
        };
        let mut path = String::with_capacity(self.path_prefix.len() + key.encoded_len_bound());
        path.push_str(&self.path_prefix);
        key.push_encoded(&mut path);
        if let Some(cloudfront) = &self.cloudfront {
            return self.links.get_or_sign(&path, asked, None, || {
                let mut resource = self.public_url(key);
                if attachment {
                    resource.push_str("?response-content-disposition=");
                    resource.push_str(&content_disposition(key.file_name()));
                }
                let expires_at = time + ttl;
                let failed = |reason| SignError::CloudFront {
                    key_pair_id: cloudfront.key_pair_id.clone(),
                    reason,
                };
                let signed = cloudfront
                    .sign(&resource, time, expires_at)
                    .map_err(failed)?;
                let cookies = match &cloudfront.cookies {
                    Some(_) => {
                        // For the object's directory: a player's segments sit beside it.
                        let url = self.public_url(key);
                        let directory = &url[..url.rfind('/').map_or(url.len(), |i| i + 1)];
                        let cookies = cloudfront
                            .cookies(directory, time, expires_at)
                            .map_err(failed)?;
                        Some(Arc::from(cookies))
                    }
                    None => None,
                };
                Ok(Signed {
                    url: signed.url,
                    expires_at,
                    cookies,
                })
            });
        }
        let keys = self.credentials.current().ok_or(SignError::NoCredentials)?;
        self.links.get_or_sign(&path, asked, Some(&keys), || {
            let ttl = covered_ttl(&keys, time, ttl)?;
            let disposition = attachment.then(|| content_disposition(key.file_name()));
            let extra: &[(&str, &str)] = match &disposition {
                Some(value) => &[("response-content-disposition", value)],
                None => &[],
            };
            let url = sigv4::presign(
                &keys,
                &Presign {
                    method,
                    origin: &self.origin,
                    host: &self.host,
                    path: &path,
                    extra_query: extra,
                    region: &self.region,
                    time,
                    expires: ttl,
                },
            );
            Ok(Signed {
                url,
                expires_at: time + ttl,
                cookies: None,
            })
        })
    }

    /// Paths with a signed link kept.
    pub fn signed_links(&self) -> usize {
        self.links.len()
    }
}

/// The configured ttl, cut to the SigV4 maximum and to the credentials' remaining life. A link
/// that would be doomed (shorter than a minute, or than the ttl if that is shorter) is refused:
/// the caller asks for a refresh.
fn covered_ttl(keys: &Keys, time: SystemTime, ttl: Duration) -> Result<Duration, SignError> {
    let ttl = ttl.min(MAX_TTL);
    let Some(expiry) = keys.expiry else {
        return Ok(ttl);
    };
    let covered = expiry
        .checked_sub(EXPIRY_MARGIN)
        .and_then(|last| last.duration_since(time).ok())
        .unwrap_or(Duration::ZERO);
    if covered < ttl.min(Duration::from_secs(60)) {
        return Err(SignError::CredentialsExpiring);
    }
    Ok(ttl.min(Duration::from_secs(covered.as_secs())))
}

/// AWS's own endpoint for a bucket: scheme, service authority, and whether path-style.
fn aws_endpoint(
    name: &str,
    region: &str,
    addressing: &Addressing,
) -> Result<(&'static str, String, bool), BucketError> {
    let path_style = addressing
        .path_style
        .unwrap_or(name.contains('.') && !addressing.accelerate);
    if addressing.accelerate && (path_style || name.contains('.')) {
        return Err(BucketError::AccelerateNeedsVirtualHost);
    }
    let service = match (addressing.accelerate, addressing.dualstack) {
        (true, true) => "s3-accelerate.dualstack.amazonaws.com".to_owned(),
        (true, false) => "s3-accelerate.amazonaws.com".to_owned(),
        (false, true) => format!("s3.dualstack.{region}.amazonaws.com"),
        (false, false) => format!("s3.{region}.amazonaws.com"),
    };
    Ok(("https", service, path_style))
}

/// An S3-compatible endpoint (MinIO, Ceph, R2): path-style unless told otherwise, and
/// virtual-hosted only with a host name.
fn custom_endpoint(
    endpoint: &str,
    addressing: &Addressing,
) -> Result<(&'static str, String, bool), BucketError> {
    if addressing.dualstack || addressing.accelerate {
        return Err(BucketError::AwsOnly);
    }
    let (scheme, authority) = parse_origin(endpoint)
        .filter(|(_, _, path)| path.is_empty())
        .map(|(s, a, _)| (s, a))
        .ok_or_else(|| BucketError::BadEndpoint(endpoint.to_owned()))?;
    let path_style = addressing.path_style.unwrap_or(true);
    // The host without its port (an IPv6 literal keeps its brackets).
    let host = match authority.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let is_ip = host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[');
    if !path_style && is_ip {
        return Err(BucketError::VirtualHostNeedsName);
    }
    Ok((scheme, authority.to_owned(), path_style))
}

/// `public_url` as the base of public object URLs, ending in `/`.
fn public_base(url: &str) -> Result<String, BucketError> {
    let (scheme, authority, path) =
        parse_origin(url).ok_or_else(|| BucketError::BadPublicUrl(url.to_owned()))?;
    Ok(format!(
        "{scheme}://{authority}{}/",
        path.trim_end_matches('/')
    ))
}

/// `attachment` with the key's file name (RFC 6266): an ASCII fallback in `filename`, the
/// exact UTF-8 name in `filename*` (RFC 5987); then encoded as a query value.
fn content_disposition(name: &str) -> String {
    if name.is_empty() {
        // A key ending in `/` names no file: let the browser choose.
        return "attachment".to_owned();
    }
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let header = format!(
        "attachment; filename=\"{fallback}\"; filename*=UTF-8''{}",
        utf8_percent_encode(name, ATTR_CHAR)
    );
    utf8_percent_encode(&header, QUERY_VALUE).to_string()
}

/// Splits `http(s)://authority[/path]` into scheme, authority and path (without trailing `/`).
fn parse_origin(url: &str) -> Option<(&'static str, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = match scheme {
        "http" => "http",
        "https" => "https",
        _ => return None,
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let uri: http::Uri = url.parse().ok()?;
    let plain = uri.host().is_some_and(|h| !h.is_empty())
        && uri.query().is_none()
        && !authority.is_empty()
        && !authority.contains(['@', '?', '#'])
        && !path.contains(['?', '#']);
    plain.then_some((scheme, authority, path))
}

/// The `Host` header for an authority: clients leave out the scheme's default port.
fn host_header(scheme: &str, authority: &str) -> String {
    let default = if scheme == "https" { ":443" } else { ":80" };
    authority
        .strip_suffix(default)
        .unwrap_or(authority)
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(name: &str, addressing: Addressing) -> Result<Bucket, BucketError> {
        Bucket::new(name, "eu-west-1", &addressing, Arc::default())
    }

    fn keys(expiry: Option<SystemTime>) -> Arc<CredentialCell> {
        Arc::new(CredentialCell::with(Keys::new(
            "AKIDEXAMPLE",
            "secret",
            None,
            expiry,
            "test",
        )))
    }

    #[test]
    fn endpoint_styles() {
        let custom = Addressing {
            endpoint: Some("http://127.0.0.1:9000"),
            ..Addressing::default()
        };
        let cases = [
            (
                "media",
                Addressing::default(),
                "https://media.s3.eu-west-1.amazonaws.com/",
            ),
            (
                "my.media",
                Addressing::default(),
                "https://s3.eu-west-1.amazonaws.com/my.media/",
            ),
            (
                "media",
                Addressing {
                    path_style: Some(true),
                    ..Addressing::default()
                },
                "https://s3.eu-west-1.amazonaws.com/media/",
            ),
            (
                "media",
                Addressing {
                    dualstack: true,
                    ..Addressing::default()
                },
                "https://media.s3.dualstack.eu-west-1.amazonaws.com/",
            ),
            (
                "media",
                Addressing {
                    accelerate: true,
                    ..Addressing::default()
                },
                "https://media.s3-accelerate.amazonaws.com/",
            ),
            (
                "media",
                Addressing {
                    accelerate: true,
                    dualstack: true,
                    ..Addressing::default()
                },
                "https://media.s3-accelerate.dualstack.amazonaws.com/",
            ),
            ("media", custom.clone(), "http://127.0.0.1:9000/media/"),
            (
                "media",
                Addressing {
                    endpoint: Some("http://127.0.0.1:9000/"),
                    ..Addressing::default()
                },
                "http://127.0.0.1:9000/media/",
            ),
            (
                "media",
                Addressing {
                    endpoint: Some("https://s3.local:9000"),
                    path_style: Some(false),
                    ..Addressing::default()
                },
                "https://media.s3.local:9000/",
            ),
        ];
        for (name, addressing, want) in cases {
            assert_eq!(
                bucket(name, addressing.clone()).unwrap().base_url(),
                want,
                "{name} {addressing:?}"
            );
        }
        let r2 = Bucket::new(
            "media",
            "auto",
            &Addressing {
                endpoint: Some("https://acct.r2.cloudflarestorage.com"),
                ..Addressing::default()
            },
            Arc::default(),
        )
        .unwrap();
        assert_eq!(
            r2.base_url(),
            "https://acct.r2.cloudflarestorage.com/media/",
            "R2 with region auto"
        );
        assert_eq!(r2.host, "acct.r2.cloudflarestorage.com");
        let explicit_port = bucket(
            "media",
            Addressing {
                endpoint: Some("https://s3.local:443"),
                ..Addressing::default()
            },
        )
        .unwrap();
        assert_eq!(
            explicit_port.host, "s3.local",
            "default port left out of the signed Host"
        );
    }

    #[test]
    fn bad_buckets_are_refused() {
        assert_eq!(
            bucket("Media", Addressing::default()).unwrap_err(),
            BucketError::BadName("Media".into())
        );
        assert!(matches!(
            Bucket::new("m", "", &Addressing::default(), Arc::default()),
            Err(BucketError::BadRegion(_))
        ));
        for endpoint in [
            "127.0.0.1:9000",
            "ftp://x",
            "http://x/path",
            "http://",
            "http://u@x",
        ] {
            let addressing = Addressing {
                endpoint: Some(endpoint),
                ..Addressing::default()
            };
            assert!(
                matches!(bucket("m", addressing), Err(BucketError::BadEndpoint(_))),
                "endpoint {endpoint:?}"
            );
        }
        let accelerate = Addressing {
            accelerate: true,
            ..Addressing::default()
        };
        assert_eq!(
            bucket("my.media", accelerate.clone()).unwrap_err(),
            BucketError::AccelerateNeedsVirtualHost
        );
        let accelerate_path = Addressing {
            path_style: Some(true),
            ..accelerate
        };
        assert_eq!(
            bucket("media", accelerate_path).unwrap_err(),
            BucketError::AccelerateNeedsVirtualHost
        );
        let ip_virtual = Addressing {
            endpoint: Some("http://127.0.0.1:9000"),
            path_style: Some(false),
            ..Addressing::default()
        };
        assert_eq!(
            bucket("media", ip_virtual).unwrap_err(),
            BucketError::VirtualHostNeedsName
        );
        let custom_dual = Addressing {
            endpoint: Some("http://x"),
            dualstack: true,
            ..Addressing::default()
        };
        assert_eq!(
            bucket("media", custom_dual).unwrap_err(),
            BucketError::AwsOnly
        );
        let bad_cdn = Addressing {
            public_url: Some("cdn.example.com"),
            ..Addressing::default()
        };
        assert!(matches!(
            bucket("media", bad_cdn),
            Err(BucketError::BadPublicUrl(_))
        ));
    }

    #[test]
    fn object_urls_are_the_base_and_the_encoded_key() {
        // The encoding itself is `s3::key`'s, table-tested there.
        let b = bucket(
            "media",
            Addressing {
                endpoint: Some("http://s3.test"),
                ..Addressing::default()
            },
        )
        .unwrap();
        for (relative, want) in [
            ("a b+c.jpg", "http://s3.test/media/up/a%20b%2Bc.jpg"),
            ("dir//x/", "http://s3.test/media/up/dir//x/"),
        ] {
            let key = ObjectKey::new("up/", relative);
            assert_eq!(b.public_url(&key), want, "key {relative:?}");
        }
    }

    #[test]
    fn public_objects_go_through_public_url() {
        let cdn = Addressing {
            public_url: Some("https://cdn.example.com/media/"),
            ..Addressing::default()
        };
        let b = Bucket::new("media", "eu-west-1", &cdn, keys(None)).unwrap();
        assert_eq!(
            b.public_url(&ObjectKey::new("up/", "a b.png")),
            "https://cdn.example.com/media/up/a%20b.png"
        );
        let signed = b
            .presign(
                "GET",
                &ObjectKey::new("up/", "a.png"),
                SystemTime::UNIX_EPOCH,
                Duration::from_secs(60),
                false,
            )
            .unwrap();
        assert!(
            signed
                .url
                .starts_with("https://media.s3.eu-west-1.amazonaws.com/up/a.png?"),
            "private objects stay on S3"
        );
    }

    #[test]
    fn ttl_is_cut_to_what_the_credentials_cover() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ttl = Duration::from_secs(3600);
        let b = |expiry| {
            Bucket::new("media", "us-east-1", &Addressing::default(), keys(expiry)).unwrap()
        };
        let long = b(None)
            .presign(
                "GET",
                &ObjectKey::new("", "a"),
                now,
                Duration::from_secs(30 * 24 * 3600),
                false,
            )
            .unwrap();
        assert!(
            long.url.contains("X-Amz-Expires=604800"),
            "capped at 7 days"
        );
        let plenty = b(Some(now + Duration::from_secs(7200)))
            .presign("GET", &ObjectKey::new("", "a"), now, ttl, false)
            .unwrap();
        assert_eq!(plenty.expires_at, now + ttl);
        let short = b(Some(now + Duration::from_secs(600)))
            .presign("GET", &ObjectKey::new("", "a"), now, ttl, false)
            .unwrap();
        assert!(
            short.url.contains("X-Amz-Expires=540"),
            "expiry − margin: {}",
            short.url
        );
        let doomed = b(Some(now + Duration::from_secs(90))).presign(
            "GET",
            &ObjectKey::new("", "a"),
            now,
            ttl,
            false,
        );
        assert!(
            matches!(doomed, Err(SignError::CredentialsExpiring)),
            "30 s left is not a useful link"
        );
        let none =
            Bucket::new("media", "us-east-1", &Addressing::default(), Arc::default()).unwrap();
        assert!(matches!(
            none.presign("GET", &ObjectKey::new("", "a"), now, ttl, false),
            Err(SignError::NoCredentials)
        ));
    }

    #[test]
    fn a_link_is_signed_once_per_second_or_window_and_never_served_after_it() {
        let b = Bucket::new("media", "us-east-1", &Addressing::default(), keys(None)).unwrap();
        let key = ObjectKey::new("up/", "a.pdf");
        let at = |secs: u64| SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs);
        let ttl = Duration::from_secs(300);
        let sign =
            |method, time, attachment| b.presign(method, &key, time, ttl, attachment).unwrap().url;
        let first = sign("GET", at(0), false);
        assert_eq!(sign("GET", at(0), false), first, "kept within its second");
        assert_eq!(b.signed_links(), 1);
        let next = sign("GET", at(1), false);
        assert_ne!(next, first, "a new second signs anew");
        assert!(next.contains("X-Amz-Date=19700112T134641Z"), "{next}");
        assert_eq!(sign("GET", at(1), false), next);
        // Each is its own link: the method and the disposition are signed.
        let head = sign("HEAD", at(1), false);
        let attachment = sign("GET", at(1), true);
        assert!(head != next && attachment != next && head != attachment);
        assert!(attachment.contains("response-content-disposition="));
        assert_eq!(sign("HEAD", at(1), false), head);
    }

    #[test]
    fn a_replaced_credential_signs_every_link_anew_at_once() {
        let cell = keys(None);
        let b = Bucket::new(
            "media",
            "us-east-1",
            &Addressing::default(),
            Arc::clone(&cell),
        )
        .unwrap();
        let key = ObjectKey::new("", "a");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let ttl = Duration::from_secs(300);
        let old = b.presign("GET", &key, now, ttl, false).unwrap();
        assert!(old.url.contains("X-Amz-Credential=AKIDEXAMPLE%2F"));
        cell.set(Keys::new("AKIDROTATED", "other", None, None, "test"));
        let new = b.presign("GET", &key, now, ttl, false).unwrap();
        assert!(
            new.url.contains("X-Amz-Credential=AKIDROTATED%2F"),
            "{}",
            new.url
        );
        // Expiring credentials are not covered by a link kept from before they were known.
        let soon = now + Duration::from_secs(600);
        cell.set(Keys::new("AKIDSHORT", "other", None, Some(soon), "test"));
        let short = b.presign("GET", &key, now, ttl, false).unwrap();
        assert!(short.expires_at <= soon - EXPIRY_MARGIN, "{short:?}");
    }

    #[test]
    fn kept_links_never_outgrow_their_capacity() {
        use crate::s3::signed_links::CAPACITY;
        let b = Bucket::new("media", "us-east-1", &Addressing::default(), keys(None)).unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        for i in 0..CAPACITY + 100 {
            let name = format!("{i}.jpg");
            let key = ObjectKey::new("", &name);
            b.presign("GET", &key, now, Duration::from_secs(60), false)
                .unwrap();
            assert!(b.signed_links() <= CAPACITY);
        }
        assert!(b.signed_links() >= 100, "kept again after emptying");
    }

    #[test]
    fn attachment_names_are_rfc_6266_encoded() {
        let header = |name: &str| {
            let encoded = content_disposition(ObjectKey::new("", name).file_name());
            percent_encoding::percent_decode_str(&encoded)
                .decode_utf8()
                .unwrap()
                .into_owned()
        };
        assert_eq!(
            header("dir/report.pdf"),
            "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"
        );
        assert_eq!(
            header("Résumé \"final\".pdf"),
            "attachment; filename=\"R_sum_ _final_.pdf\"; filename*=UTF-8''R%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert!(!content_disposition("a b").contains(' '), "query-encoded");
        assert_eq!(header("dir/"), "attachment", "no file name to give");
    }
}
