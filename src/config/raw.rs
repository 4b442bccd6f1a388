//! The serde mirror of `proxy.yaml`, exactly as written by the operator.
//!
//! Every struct denies unknown fields and no struct uses `flatten` or internally tagged enums, so
//! serde_yaml can report a mistake with its key path and line (`routes[1]: unknown field `tll``).
//! Nothing here is checked beyond its type; `compile` turns these into runtime types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Listen,
    #[serde(default)]
    pub threads: Option<usize>,
    #[serde(default)]
    pub shutdown: RawShutdown,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub open_file_cache: RawOpenFileCache,
    /// Where the pid file and the upgrade socket live.
    #[serde(default)]
    pub runtime_dir: Option<String>,
    /// The admin listener (metrics, health); off without it.
    #[serde(default)]
    pub admin: Option<String>,
    /// Proxies in front (CDN, load balancer) whose `X-Forwarded-For` is believed.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Compression of what the default upstream answers (routes may have their own).
    #[serde(default)]
    pub compress: Option<RawCompress>,
    #[serde(default)]
    pub access_log: RawAccessLog,
    #[serde(default)]
    pub upstreams: BTreeMap<String, RawUpstream>,
    #[serde(default)]
    pub default_upstream: Option<String>,
    #[serde(default)]
    pub buckets: BTreeMap<String, RawBucket>,
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShutdown {
    #[serde(default, with = "opt_duration")]
    pub grace_period: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub address: String,
    #[serde(default, with = "opt_duration")]
    pub connect_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub read_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub write_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBucket {
    pub bucket: String,
    pub region: String,
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub path_style: Option<bool>,
    #[serde(default)]
    pub credentials: Option<RawCredentials>,
    #[serde(default)]
    pub public_url: Option<String>,
    #[serde(default)]
    pub dualstack: bool,
    #[serde(default)]
    pub accelerate: bool,
    /// Private objects get CloudFront-signed URLs on `public_url` instead of S3 links.
    #[serde(default)]
    pub cloudfront: Option<RawCloudFront>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloudFront {
    pub key_pair_id: String,
    pub private_key: String,
    #[serde(default)]
    pub policy: Option<RawCloudFrontPolicy>,
    /// Custom policy: only clients in this range (`203.0.113.0/24`).
    #[serde(default)]
    pub ip_range: Option<String>,
    /// Custom policy: the link works from its signing time on, not before.
    #[serde(default)]
    pub not_before: Option<bool>,
    /// Also set CloudFront signed cookies for the object's directory on the redirect.
    #[serde(default)]
    pub cookies: Option<bool>,
    /// The domain the cookies are set for: one both this site and the distribution are in.
    #[serde(default)]
    pub cookie_domain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawCloudFrontPolicy {
    Canned,
    Custom,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    #[serde(default)]
    pub session_token: Option<String>,
}

// Hand-written so that a stray `{:?}` can never print a secret.
impl fmt::Debug for RawCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    pub prefix: String,
    pub root: String,
    #[serde(default)]
    pub bucket: Option<String>,
    /// Where requests under the route that go upstream (uploads, deletes) are sent.
    #[serde(default)]
    pub upstream: Option<String>,
    #[serde(default)]
    pub key_prefix: String,
    #[serde(default)]
    pub access: Option<RawAccess>,
    #[serde(default, with = "opt_duration")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub sign_window: Option<Duration>,
    #[serde(default)]
    pub content_disposition: Option<RawDisposition>,
    #[serde(default, with = "opt_duration")]
    pub redirect_max_age: Option<Duration>,
    #[serde(default)]
    pub rules: Vec<RawRule>,
    #[serde(default)]
    pub index: Vec<String>,
    #[serde(default)]
    pub precompressed: Vec<RawEncoding>,
    #[serde(default)]
    pub cache_control: Option<String>,
    #[serde(default)]
    pub dotfiles: Option<AllowDeny>,
    #[serde(default)]
    pub symlinks: Option<AllowDeny>,
    #[serde(default)]
    pub offload: Option<RawOffload>,
    #[serde(default)]
    pub authorize: Option<RawAuthorize>,
    #[serde(default)]
    pub shadow: bool,
    #[serde(default)]
    pub cors: Option<RawCors>,
    #[serde(default)]
    pub limits: Option<RawUpstreamLimits>,
    #[serde(default)]
    pub compress: Option<RawCompress>,
}

/// `compress:`: which upstream answers are compressed on the way to the client.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompress {
    #[serde(default)]
    pub encodings: Option<Vec<RawEncoding>>,
    #[serde(default, with = "opt_bytes")]
    pub min_length: Option<u64>,
    #[serde(default)]
    pub types: Option<Vec<String>>,
}

/// `limits:` on a route: what it lets through to its upstream.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamLimits {
    #[serde(default, with = "opt_bytes")]
    pub max_body: Option<u64>,
    #[serde(default)]
    pub max_inflight: Option<usize>,
    #[serde(default)]
    pub rate: Option<RawRate>,
}

/// `rate:` in `limits:`: requests per client.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRate {
    pub requests: u32,
    #[serde(with = "opt_duration")]
    pub per: Option<Duration>,
    #[serde(default)]
    pub burst: Option<u32>,
    #[serde(default)]
    pub key: RawRateKey,
}

/// What a rate is counted by.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawRateKey {
    /// The client's address (behind `trusted_proxies:`, the one they forwarded).
    #[default]
    ClientIp,
}

/// `cors:` on a route: which other origins' pages may read its files and redirects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCors {
    pub origins: Vec<String>,
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default, with = "opt_duration")]
    pub max_age: Option<Duration>,
}

/// `authorize:` on a route: ask the legacy application before answering.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuthorize {
    pub upstream: String,
    pub path: String,
    #[serde(default)]
    pub forward: Vec<String>,
    #[serde(default, with = "opt_duration")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub cache: Option<Duration>,
    #[serde(default)]
    pub applies_to: Option<RawAppliesTo>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAppliesTo {
    Private,
    All,
}

/// `offload:` on a route: how `spillway offload` moves its files to the bucket.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOffload {
    #[serde(default, with = "opt_duration")]
    pub min_age: Option<Duration>,
    #[serde(default)]
    pub after: Option<RawAfter>,
    #[serde(default)]
    pub archive: Option<String>,
    #[serde(default)]
    pub concurrency: Option<usize>,
    #[serde(default, with = "opt_bytes")]
    pub multipart_threshold: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAfter {
    Delete,
    Archive,
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawEncoding {
    Br,
    Zstd,
    Gzip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AllowDeny {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub access: RawAccess,
    #[serde(default, with = "opt_duration")]
    pub ttl: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub sign_window: Option<Duration>,
    #[serde(default)]
    pub content_disposition: Option<RawDisposition>,
    #[serde(default)]
    pub authorize: Option<RawAuthorize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawDisposition {
    /// S3's own default; lets a rule undo a route's `attachment`.
    Inline,
    Attachment,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawAccess {
    Public,
    Private,
}

/// `listen:` takes one listener or a list of them; a listener is an address, or a map with an
/// address and `tls:`.
#[derive(Debug)]
pub struct Listen {
    pub entries: Vec<RawListener>,
    /// Whether it was written as a list, so a problem can name `listen[1]` or `listen`.
    pub is_list: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub address: String,
    #[serde(default)]
    pub tls: Option<RawTls>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub cert: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    /// More certificates, chosen by SNI against each certificate's names.
    #[serde(default)]
    pub sni: Vec<RawCertificate>,
    /// Certificates from an ACME CA instead of files.
    #[serde(default)]
    pub acme: Option<RawAcme>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAcme {
    pub domains: Vec<String>,
    /// One `mailto:` address or a list of them.
    #[serde(default)]
    pub contact: Option<OneOrMany>,
    #[serde(default)]
    pub directory: Option<String>,
    pub state_dir: String,
    #[serde(default)]
    pub challenge: Option<RawChallenge>,
    #[serde(default)]
    pub directory_ca: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RawChallenge {
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// Strings written alone or as a list.
#[derive(Debug)]
pub struct OneOrMany(pub Vec<String>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct OneOrManyVisitor;
        impl<'de> Visitor<'de> for OneOrManyVisitor {
            type Value = OneOrMany;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![v.to_owned()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut all = Vec::new();
                while let Some(one) = seq.next_element::<String>()? {
                    all.push(one);
                }
                Ok(OneOrMany(all))
            }
        }
        deserializer.deserialize_any(OneOrManyVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: String,
    pub key: String,
}

/// One listener: `"host:port"` or `{ address: ..., tls: ... }`.
struct ListenEntry(RawListener);

struct ListenerVisitor;

impl<'de> Visitor<'de> for ListenerVisitor {
    type Value = RawListener;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an address like \"127.0.0.1:8080\", or a map with `address:` and `tls:`")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawListener, E> {
        Ok(RawListener {
            address: v.to_owned(),
            tls: None,
        })
    }
    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<RawListener, A::Error> {
        RawListener::deserialize(de::value::MapAccessDeserializer::new(map))
    }
}

impl<'de> Deserialize<'de> for ListenEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_any(ListenerVisitor)
            .map(ListenEntry)
    }
}

impl<'de> Deserialize<'de> for Listen {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListenVisitor;
        impl<'de> Visitor<'de> for ListenVisitor {
            type Value = Listen;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an address like \"127.0.0.1:8080\", a map with `address:` and `tls:`, or a list of them")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Listen, E> {
                Ok(Listen {
                    entries: vec![ListenerVisitor.visit_str(v)?],
                    is_list: false,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Listen, A::Error> {
                Ok(Listen {
                    entries: vec![ListenerVisitor.visit_map(map)?],
                    is_list: false,
                })
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Listen, A::Error> {
                let mut all = Vec::new();
                while let Some(ListenEntry(listener)) = seq.next_element()? {
                    all.push(listener);
                }
                Ok(Listen {
                    entries: all,
                    is_list: true,
                })
            }
        }
        deserializer.deserialize_any(ListenVisitor)
    }
}

/// `access_log:`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    #[serde(default)]
    pub format: Option<RawLogFormat>,
    /// `stderr`, `stdout`, or a file path.
    #[serde(default)]
    pub path: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RawLogFormat {
    Json,
    Combined,
    Text,
    Off,
}

/// `limits:`: what one client may hold of the server.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    #[serde(default)]
    pub max_connections: Option<usize>,
    /// For the default upstream (requests outside routes, and routes without `limits:`).
    #[serde(default, with = "opt_bytes")]
    pub max_body: Option<u64>,
    #[serde(default)]
    pub max_inflight: Option<usize>,
    #[serde(default)]
    pub rate: Option<RawRate>,
    #[serde(default, with = "opt_duration")]
    pub send_timeout: Option<Duration>,
    #[serde(default, with = "opt_duration")]
    pub idle_timeout: Option<Duration>,
}

/// `open_file_cache:`: what each root remembers of its recent lookups.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpenFileCache {
    #[serde(default)]
    pub entries: Option<usize>,
    #[serde(default, with = "opt_duration")]
    pub valid: Option<Duration>,
}

/// Durations are written the humantime way (`300s`, `5m`, `1h 30m`); a bad one is reported by
/// serde_yaml with its key path and line.
mod opt_duration {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        // A visitor rather than `String::deserialize` then parse: an error raised inside
        // `visit_str` is located at the value, not at the enclosing map.
        struct DurationVisitor;
        impl Visitor<'_> for DurationVisitor {
            type Value = Option<Duration>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration like 300s or 5m")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                humantime::parse_duration(text).map(Some).map_err(|e| {
                    E::custom(format!(
                        "invalid duration {text:?}: {e} (write e.g. 300s or 5m)"
                    ))
                })
            }
        }
        d.deserialize_str(DurationVisitor)
    }
}

/// Sizes are written with a unit (`64MiB`, `5MB`, `1GiB`, `512KiB`, `100B`); a bad one is
/// reported by serde_yaml with its key path and line.
pub(crate) mod opt_bytes {
    use super::*;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        struct BytesVisitor;
        impl Visitor<'_> for BytesVisitor {
            type Value = Option<u64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a size like 64MiB")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
                parse_size(text).map(Some).ok_or_else(|| {
                    E::custom(format!(
                        "invalid size {text:?} (write e.g. 64MiB, 500MB or 1GiB)"
                    ))
                })
            }
        }
        d.deserialize_str(BytesVisitor)
    }

    /// `<number><unit>`, binary (KiB, MiB, GiB, TiB) or decimal (KB, MB, GB, TB) or B.
    pub fn parse_size(text: &str) -> Option<u64> {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit())?;
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().ok()?;
        let unit: u64 = match unit.trim() {
            "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            _ => return None,
        };
        number.checked_mul(unit)
    }

    #[cfg(test)]
    mod tests {
        use super::parse_size;

        #[test]
        fn sizes_need_a_unit() {
            assert_eq!(parse_size("64MiB"), Some(64 << 20));
            assert_eq!(parse_size("5 MB"), Some(5_000_000));
            assert_eq!(parse_size("1GiB"), Some(1 << 30));
            assert_eq!(parse_size("100B"), Some(100));
            for bad in ["64", "MiB", "1.5GiB", "-1MiB", "64mib", "99999999999TiB"] {
                assert_eq!(parse_size(bad), None, "{bad}");
            }
        }
    }
}
