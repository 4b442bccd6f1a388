//! AWS Signature Version 4, query-string form, for S3 GET and HEAD links.
//!
//! aws-sigv4's general signer costs ~8.5 µs a call, mostly in work that does not change between
//! requests: parsing the URL back, building header maps, and deriving the signing key (four
//! HMACs) every time. This presigner builds the canonical request directly from the parts
//! spillway already has and derives the signing key once per day. The cryptography is
//! aws-sigv4's own (`generate_signing_key`, `calculate_signature`), and tests compare every
//! URL with aws-sigv4's full signer.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use sha2::{Digest, Sha256};

/// Bytes that stay literal in a query-string value: RFC 3986 unreserved characters only.
pub const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// A set of AWS credentials and the signing key derived from them for one day.
pub struct Keys {
    pub access_key_id: String,
    secret_access_key: String,
    pub session_token: Option<String>,
    /// When temporary credentials stop working; `None` for long-term keys.
    pub expiry: Option<SystemTime>,
    /// Where they came from (`proxy.yaml`, `environment`, `profile`, ...), for logs.
    pub source: String,
    day_key: ArcSwapOption<DayKey>,
}

/// The signing key for one UTC day and region (it depends on nothing else).
struct DayKey {
    date: [u8; 8],
    region: String,
    key: Vec<u8>,
}

// Hand-written so the secret and token never reach a log.
impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("access_key_id", &self.access_key_id)
            .field("expiry", &self.expiry)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl Keys {
    pub fn new(
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
        session_token: Option<String>,
        expiry: Option<SystemTime>,
        source: impl Into<String>,
    ) -> Keys {
        Keys {
            access_key_id: access_key_id.into(),
            secret_access_key: secret_access_key.into(),
            session_token,
            expiry,
            source: source.into(),
            day_key: ArcSwapOption::empty(),
        }
    }

    /// For clients that sign with these keys themselves (`offload`'s S3 client).
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// The signing key for `date` (YYYYMMDD), derived at most once per day and region. Lock-free:
    /// concurrent first requests of a day may each derive it; one of them is kept.
    fn signing_key(&self, date: &[u8; 8], region: &str, time: SystemTime) -> Arc<DayKey> {
        if let Some(cached) = self.day_key.load_full() {
            if &cached.date == date && cached.region == region {
                return cached;
            }
        }
        let key =
            aws_sigv4::sign::v4::generate_signing_key(&self.secret_access_key, time, region, "s3");
        let fresh = Arc::new(DayKey {
            date: *date,
            region: region.to_owned(),
            key: key.as_ref().to_vec(),
        });
        self.day_key.store(Some(Arc::clone(&fresh)));
        fresh
    }
}

/// One link to sign.
#[derive(Debug, Clone, Copy)]
pub struct Presign<'a> {
    /// `GET` or `HEAD`: the link only works for the method it was signed for.
    pub method: &'a str,
    /// `https://host[:port]`, as the link will start.
    pub origin: &'a str,
    /// The `Host` header S3 will see: the authority without a default port.
    pub host: &'a str,
    /// The path, already percent-encoded, starting with `/`.
    pub path: &'a str,
    /// Extra query parameters, already encoded, sorted, and sorting after `X-Amz-*`
    /// (e.g. `response-content-disposition`).
    pub extra_query: &'a [(&'a str, &'a str)],
    pub region: &'a str,
    pub time: SystemTime,
    pub expires: Duration,
}

// Long on purpose: the SigV4 steps in the order of the specification (canonical request, string to sign, signature, URL).
/// Returns the presigned URL.
pub fn presign(keys: &Keys, p: &Presign) -> String {
    let (date, stamp) = amz_date(p.time);
    let date_str = std::str::from_utf8(&date).unwrap_or_default();
    let stamp_str = std::str::from_utf8(&stamp).unwrap_or_default();
    let scope_len = date.len() + p.region.len() + 20;

    // The canonical query string is also the URL's query (minus the signature), so it is
    // built once and used for both.
    let mut query = String::with_capacity(
        256 + p
            .extra_query
            .iter()
            .map(|(k, v)| k.len() + v.len() + 2)
            .sum::<usize>(),
    );
    query.push_str("X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=");
    query.extend(utf8_percent_encode(&keys.access_key_id, QUERY_VALUE));
    let _ = write!(
        query,
        "%2F{date_str}%2F{}%2Fs3%2Faws4_request&X-Amz-Date={stamp_str}&X-Amz-Expires={}",
        p.region,
        p.expires.as_secs()
    );
    if let Some(token) = &keys.session_token {
        query.push_str("&X-Amz-Security-Token=");
        query.extend(utf8_percent_encode(token, QUERY_VALUE));
    }
    query.push_str("&X-Amz-SignedHeaders=host");
    for (name, value) in p.extra_query {
        query.push('&');
        query.push_str(name);
        query.push('=');
        query.push_str(value);
    }

    let mut hasher = Sha256::new();
    for part in [
        p.method,
        "\n",
        p.path,
        "\n",
        &query,
        "\nhost:",
        p.host,
        "\n\nhost\nUNSIGNED-PAYLOAD",
    ] {
        hasher.update(part.as_bytes());
    }
    let mut canonical_hex = [0u8; 64];
    // A SHA-256 digest is 32 bytes: exactly 64 hex digits, always ASCII.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut canonical_hex);
    let canonical_hash = std::str::from_utf8(&canonical_hex).unwrap_or_default();

    let mut string_to_sign = String::with_capacity(64 + scope_len + canonical_hash.len());
    let _ = write!(
        string_to_sign,
        "AWS4-HMAC-SHA256\n{stamp_str}\n{date_str}/{}/s3/aws4_request\n{canonical_hash}",
        p.region
    );
    let day_key = keys.signing_key(&date, p.region, p.time);
    let signature =
        aws_sigv4::sign::v4::calculate_signature(&day_key.key, string_to_sign.as_bytes());

    let mut url = String::with_capacity(p.origin.len() + p.path.len() + query.len() + 90);
    url.push_str(p.origin);
    url.push_str(p.path);
    url.push('?');
    url.push_str(&query);
    url.push_str("&X-Amz-Signature=");
    url.push_str(&signature);
    url
}

/// `YYYYMMDD` and `YYYYMMDDTHHMMSSZ` for `time`, in UTC.
fn amz_date(time: SystemTime) -> ([u8; 8], [u8; 16]) {
    let secs = time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let mut date = [0u8; 8];
    let mut stamp = [0u8; 16];
    let digits = |out: &mut [u8], mut v: u64| {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    digits(&mut date[0..4], year as u64);
    digits(&mut date[4..6], month as u64);
    digits(&mut date[6..8], day as u64);
    stamp[..8].copy_from_slice(&date);
    stamp[8] = b'T';
    digits(&mut stamp[9..11], h);
    digits(&mut stamp[11..13], m);
    digits(&mut stamp[13..15], s);
    stamp[15] = b'Z';
    (date, stamp)
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn amz_dates() {
        let cases = [
            (0, "19700101T000000Z"),
            (951_782_400, "20000229T000000Z"),
            (1_369_353_600, "20130524T000000Z"),
            (1_700_000_000, "20231114T221320Z"),
            (4_102_444_799, "20991231T235959Z"),
        ];
        for (secs, stamp) in cases {
            let (d, s) = amz_date(at(secs));
            assert_eq!(std::str::from_utf8(&s).unwrap(), stamp, "{secs}");
            assert_eq!(d[..], s[..8], "the date is the stamp's first 8 bytes");
        }
    }

    /// The example in the AWS documentation, "Authenticating Requests: Using Query
    /// Parameters (AWS Signature Version 4)": GET examplebucket/test.txt, 2013-05-24, 86400 s.
    #[test]
    fn reproduces_the_aws_documentation_example() {
        let keys = Keys::new(
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            None,
            None,
            "test",
        );
        let url = presign(
            &keys,
            &Presign {
                method: "GET",
                origin: "https://examplebucket.s3.amazonaws.com",
                host: "examplebucket.s3.amazonaws.com",
                path: "/test.txt",
                extra_query: &[],
                region: "us-east-1",
                time: at(1_369_353_600),
                expires: Duration::from_secs(86_400),
            },
        );
        assert_eq!(
            url,
            "https://examplebucket.s3.amazonaws.com/test.txt?X-Amz-Algorithm=AWS4-HMAC-SHA256\
             &X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request\
             &X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        );
    }
}
