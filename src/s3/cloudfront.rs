//! CloudFront signed URLs for private objects behind a CDN: the policy (canned or custom)
//! exactly as CloudFront parses it and as botocore's `CloudFrontSigner` writes it, signed with
//! the distribution's key (RSA with SHA-1, or ECDSA P-256 with SHA-256), in CloudFront's
//! base64 (`+`→`-`, `=`→`_`, `/`→`~`).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::PrivateKeyDer;

use super::rsa_sha1::RsaSha1Key;

/// `not_before` starts this many seconds before the signing time: an edge whose clock is
/// behind spillway's must not refuse a link it was just sent to.
const CLOCK_SKEW: u64 = 60;

/// A bucket's `cloudfront:` signer.
#[derive(Debug)]
pub struct CloudFront {
    /// The public key's id in CloudFront (`Key-Pair-Id`).
    pub key_pair_id: String,
    pub key: SigningKey,
    pub policy: PolicyKind,
    /// Also sign cookies for the object's directory, set for this domain.
    pub cookies: Option<CookieScope>,
}

/// Where signed cookies are sent: a domain both spillway's site and the distribution are in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CookieScope {
    pub domain: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyKind {
    /// `Expires=…`: the resource and an expiry only.
    Canned,
    /// `Policy=…`: adds conditions CloudFront checks too.
    Custom {
        /// `IpAddress: {AWS:SourceIp}`: only clients in this range (`a.b.c.d/n`).
        ip_range: Option<String>,
        /// `DateGreaterThan`: the link works from its signing time on, not before.
        not_before: bool,
    },
}

/// The private key of a CloudFront key pair.
#[derive(Debug)]
pub enum SigningKey {
    Rsa(RsaSha1Key),
    Ecdsa(EcdsaKeyPair),
}

/// Why a key file cannot sign for CloudFront.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read a private key from {path}: {error}")]
    Read { path: String, error: String },
    #[error(
        "{0} holds neither an RSA key nor an ECDSA P-256 key, the two kinds CloudFront verifies"
    )]
    Kind(String),
    #[error("{path} holds a {bits}-bit RSA key; CloudFront takes 2048-bit RSA keys (or ECDSA P-256, recommended)")]
    RsaSize { path: String, bits: usize },
}

impl SigningKey {
    /// Reads a PEM private key (PKCS#1, SEC1 or PKCS#8) and checks it is one CloudFront takes.
    pub fn from_pem_file(path: &Path) -> Result<SigningKey, KeyError> {
        let shown = path.display().to_string();
        let der = PrivateKeyDer::from_pem_file(path).map_err(|e| KeyError::Read {
            path: shown.clone(),
            error: match e {
                rustls::pki_types::pem::Error::Io(io) => io.to_string(),
                rustls::pki_types::pem::Error::NoItemsFound => {
                    let text = std::fs::read_to_string(path).unwrap_or_default();
                    match text.contains("ENCRYPTED PRIVATE KEY") {
                        true => {
                            "it is encrypted, and spillway reads unencrypted keys only \
                                 (decrypt it with `openssl pkey -in KEY -out KEY.plain`, mode 0600)"
                                .to_owned()
                        }
                        false => "no PEM private key in it".to_owned(),
                    }
                }
                other => format!("{other:?}"),
            },
        })?;
        let bytes = der.secret_der();
        if let Ok(ec) = EcdsaKeyPair::from_private_key_der(&ECDSA_P256_SHA256_ASN1_SIGNING, bytes) {
            return Ok(SigningKey::Ecdsa(ec));
        }
        let rsa = RsaSha1Key::from_der(bytes).ok_or_else(|| KeyError::Kind(shown.clone()))?;
        if rsa.bits() != 2048 {
            return Err(KeyError::RsaSize {
                path: shown,
                bits: rsa.bits(),
            });
        }
        Ok(SigningKey::Rsa(rsa))
    }

    /// What `check` calls it.
    pub fn describe(&self) -> String {
        match self {
            SigningKey::Rsa(rsa) => format!("RSA {} bits, SHA-1", rsa.bits()),
            SigningKey::Ecdsa(_) => "ECDSA P-256, SHA-256".to_owned(),
        }
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, String> {
        match self {
            SigningKey::Rsa(rsa) => rsa.sign(message),
            SigningKey::Ecdsa(ec) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                ec.sign(&rng, message)
                    .map(|s| s.as_ref().to_vec())
                    .map_err(|_| "AWS-LC refused to make the ECDSA signature".to_owned())
            }
        }
    }
}

/// A signed URL and what it was signed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedUrl {
    pub url: String,
    /// The policy JSON (for a canned policy, the statement CloudFront rebuilds).
    pub policy: String,
}

impl CloudFront {
    /// `resource` (a URL on the distribution, query included) signed to work until
    /// `expires_at`; with a custom policy that asks for it, from `signed_at` on.
    pub fn sign(
        &self,
        resource: &str,
        signed_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<SignedUrl, String> {
        let expires = epoch(expires_at);
        let (policy, first) = match &self.policy {
            PolicyKind::Canned => {
                let policy = canned_policy(resource, expires);
                (policy, format!("Expires={expires}"))
            }
            PolicyKind::Custom {
                ip_range,
                not_before,
            } => {
                let after = not_before.then(|| epoch(signed_at).saturating_sub(CLOCK_SKEW));
                let policy = custom_policy(resource, expires, after, ip_range.as_deref());
                let encoded = cloudfront_base64(policy.as_bytes());
                (policy, format!("Policy={encoded}"))
            }
        };
        let signature = cloudfront_base64(&self.key.sign(policy.as_bytes())?);
        let separator = if resource.contains('?') { '&' } else { '?' };
        let url = format!(
            "{resource}{separator}{first}&Signature={signature}&Key-Pair-Id={}",
            self.key_pair_id
        );
        Ok(SignedUrl { url, policy })
    }
}

/// The policy a signed URL carries, as CloudFront reads it: the `Policy` parameter decoded, or
/// the canned statement rebuilt from the URL before its signing parameters and `Expires`.
pub fn policy_of(url: &str) -> Option<String> {
    let (resource, rest) = url
        .rsplit_once("?Expires=")
        .or_else(|| url.rsplit_once("&Expires="))
        .map(|(resource, rest)| (resource, ("Expires", rest)))
        .or_else(|| {
            let (resource, rest) = url
                .rsplit_once("?Policy=")
                .or_else(|| url.rsplit_once("&Policy="))?;
            Some((resource, ("Policy", rest)))
        })?;
    let value = rest.1.split('&').next()?;
    match rest.0 {
        "Expires" => Some(canned_policy(resource, value.parse().ok()?)),
        _ => String::from_utf8(cloudfront_unbase64(value)?).ok(),
    }
}

impl CloudFront {
    /// CloudFront signed cookies for everything below `directory` (a URL on the distribution
    /// ending in `/`): a custom policy for `directory*`, with this signer's conditions.
    /// `Set-Cookie` values, `Secure` and `HttpOnly`, for the directory's path on the
    /// distribution (none without `cookies:`), or why the key could not sign.
    pub fn cookies(
        &self,
        directory: &str,
        signed_at: SystemTime,
        expires_at: SystemTime,
    ) -> Result<Vec<String>, String> {
        let Some(scope) = self.cookies.as_ref() else {
            return Ok(Vec::new());
        };
        let (ip_range, not_before) = match &self.policy {
            PolicyKind::Canned => (None, false),
            PolicyKind::Custom {
                ip_range,
                not_before,
            } => (ip_range.as_deref(), *not_before),
        };
        let after = not_before.then(|| epoch(signed_at).saturating_sub(CLOCK_SKEW));
        let policy = custom_policy(&format!("{directory}*"), epoch(expires_at), after, ip_range);
        let signature = cloudfront_base64(&self.key.sign(policy.as_bytes())?);
        let path = directory
            .split_once("://")
            .and_then(|(_, rest)| rest.find('/').map(|i| &rest[i..]))
            .unwrap_or("/");
        let attributes = format!("; Domain={}; Path={path}; Secure; HttpOnly", scope.domain);
        Ok(vec![
            format!(
                "CloudFront-Policy={}{attributes}",
                cloudfront_base64(policy.as_bytes())
            ),
            format!("CloudFront-Signature={signature}{attributes}"),
            format!("CloudFront-Key-Pair-Id={}{attributes}", self.key_pair_id),
        ])
    }
}

fn epoch(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

/// The canned policy CloudFront rebuilds from `Expires` and the URL (no whitespace).
pub fn canned_policy(resource: &str, expires: u64) -> String {
    format!(
        "{{\"Statement\":[{{\"Resource\":{},\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}",
        json_string(resource)
    )
}

/// A custom policy, its conditions in botocore's order (DateLessThan, IpAddress,
/// DateGreaterThan); `ip_range` is a range (`a.b.c.d/n`; the config makes a bare address one).
pub fn custom_policy(
    resource: &str,
    expires: u64,
    not_before: Option<u64>,
    ip_range: Option<&str>,
) -> String {
    let mut condition = format!("{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}");
    if let Some(range) = ip_range {
        condition.push_str(&format!(
            ",\"IpAddress\":{{\"AWS:SourceIp\":{}}}",
            json_string(range)
        ));
    }
    if let Some(after) = not_before {
        condition.push_str(&format!(
            ",\"DateGreaterThan\":{{\"AWS:EpochTime\":{after}}}"
        ));
    }
    condition.push('}');
    format!(
        "{{\"Statement\":[{{\"Resource\":{},\"Condition\":{condition}}}]}}",
        json_string(resource)
    )
}

/// A JSON string as Python's `json.dumps` writes it (what botocore signs): ASCII only, other
/// characters as `\uXXXX` (UTF-16, surrogate pairs beyond the BMP).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
    out
}

/// Base64 with CloudFront's substitutions for URLs: `+`→`-`, `=`→`_`, `/`→`~`.
pub fn cloudfront_base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// [`cloudfront_base64`] undone; `None` for what is not such base64.
pub fn cloudfront_unbase64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(standard)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_canned_policy_is_the_statement_cloudfront_rebuilds() {
        assert_eq!(
            canned_policy(
                "https://d111111abcdef8.cloudfront.net/media/a b.jpg",
                1_767_225_600
            ),
            r#"{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/media/a b.jpg","Condition":{"DateLessThan":{"AWS:EpochTime":1767225600}}}]}"#
        );
    }

    #[test]
    fn a_custom_policy_has_botocores_order() {
        assert_eq!(
            custom_policy("https://d.example/x", 20, Some(10), Some("192.0.2.7/32")),
            r#"{"Statement":[{"Resource":"https://d.example/x","Condition":{"DateLessThan":{"AWS:EpochTime":20},"IpAddress":{"AWS:SourceIp":"192.0.2.7/32"},"DateGreaterThan":{"AWS:EpochTime":10}}}]}"#
        );
    }

    #[test]
    fn json_strings_are_ascii_as_python_writes_them() {
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(json_string("é😀"), r#""\u00e9\ud83d\ude00""#);
    }

    #[test]
    fn base64_takes_cloudfronts_substitutions() {
        assert_eq!(cloudfront_base64(&[0xfb, 0xff]), "-~8_");
        assert_eq!(cloudfront_unbase64("-~8_"), Some(vec![0xfb, 0xff]));
    }
}
