//! Presigned links: spillway's own SigV4 presigner, checked end to end by a real S3 server
//! (s3s + s3s-fs, which verifies signatures) and compared, URL for URL, with aws-sigv4's full
//! signer.
//!
//! What the test S3 server (s3s 0.14) does and does not check, which these tests rely on:
//! - the signature: over method, path, every query parameter except `X-Amz-Signature`, and
//!   `host`; it tries the path re-encoded from its decoded form first, then the raw path;
//! - expiry (`AccessDenied`, "Request has expired") *before* the signature;
//! - `X-Amz-Security-Token`: never validated (there is no STS), but signed over like any
//!   other query parameter, so a token changed after signing is `SignatureDoesNotMatch`;
//! - `response-content-disposition`: echoed as `Content-Disposition` on GET, not on HEAD.

use crate::support;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spillway::s3::credentials::CredentialCell;
use spillway::s3::key::ObjectKey;
use spillway::s3::sigv4::{self, Keys, Presign};
use spillway::s3::{Addressing, Bucket};
use support::{
    encode_key, follow, get, request, run_cli_env, Response, S3Server, Spillway, Stack,
    StackOptions, ACCESS_KEY, SECRET_KEY,
};

// ---------------------------------------------------------------------------
// The awkward-key corpus
// ---------------------------------------------------------------------------

/// A key relative to the route (the S3 key is `key_prefix` + `relative`).
struct Key {
    label: &'static str,
    relative: String,
    /// s3s-fs stores keys as files: `a//b` and `dir/` cannot be stored, so the S3 server can
    /// only answer 404 NoSuchKey for them, which still proves it accepted the signature.
    storable: bool,
}

fn corpus() -> Vec<Key> {
    let key = |label, relative: &str| Key {
        label,
        relative: relative.to_owned(),
        storable: true,
    };
    let mut keys = vec![
        key("space", "space name.txt"),
        key("plus", "plus+sign.txt"),
        key("percent", "100% sure.txt"),
        key("parens", "paren(1).txt"),
        key("bang", "bang!.txt"),
        key("star", "star*.txt"),
        key("quote", "it's.txt"),
        key("at", "at@home.txt"),
        key("dollar", "$dollar.txt"),
        key("ampersand", "a&b.txt"),
        key("equals", "a=b.txt"),
        key("semicolon", "a;b.txt"),
        key("colon", "a:b.txt"),
        key("comma", "a,b.txt"),
        key("question mark", "why?.txt"),
        key("hash", "#hash.txt"),
        key("tilde", "~tilde.txt"),
        key("NFC", "caf\u{e9}.txt"),
        key("NFD", "cafe\u{301}.txt"),
        key("emoji", "party \u{1f389}/\u{1f469}\u{200d}\u{1f4bb}.txt"),
        key(
            "CJK",
            "\u{6f22}\u{5b57}/\u{4e2d}\u{6587} \u{30d5}\u{30a1}\u{30a4}\u{30eb}.txt",
        ),
        key("~1000 bytes", &long_key()),
        Key {
            label: "double slash",
            relative: "double//slash.txt".to_owned(),
            storable: false,
        },
        Key {
            label: "trailing slash",
            relative: "no-such-dir/".to_owned(),
            storable: false,
        },
    ];
    keys.sort_by(|a, b| a.label.cmp(b.label));
    keys
}

/// About 1,000 bytes of key in segments under 255 bytes (s3s-fs makes each one a file name),
/// with multi-byte characters, spaces and `+` so the encoded form is ~2,500 bytes.
fn long_key() -> String {
    let segments: Vec<String> = (0..4)
        .map(|i| format!("segment {i} {}", "\u{e4}+b ".repeat(47)))
        .collect();
    let key = format!("{}/end.bin", segments.join("/"));
    assert!(
        (990..=1010).contains(&(KEY_PREFIX.len() + key.len())),
        "{}",
        key.len()
    );
    assert!(key.split('/').all(|s| s.len() < 255));
    key
}

/// Where the corpus lives in the bucket.
const KEY_PREFIX: &str = "sig/";

/// Distinct bytes for the i-th key.
fn object_bytes(i: usize, relative: &str) -> Vec<u8> {
    format!("object #{i}: {relative}\n").into_bytes()
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Starts spillway with `buckets` and `routes` (YAML, indented as map entries / list items);
/// every route's `root: www` is one empty directory, so every request is a miss.
fn start_proxy(buckets: &str, routes: &str) -> Spillway {
    Spillway::start_custom(&[], |port, dir| {
        std::fs::create_dir_all(dir.join("www")).expect("create www");
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nshutdown:\n  grace_period: 0s\n  timeout: 1s\nbuckets:\n{buckets}routes:\n{routes}"
        )
    })
}

/// One bucket entry for [`start_proxy`].
fn bucket_yaml(name: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "  {name}:\n    bucket: media\n    region: us-east-1\n    endpoint: \"{endpoint}\"\n{extra}    credentials:\n      access_key_id: \"{ACCESS_KEY}\"\n      secret_access_key: \"{SECRET_KEY}\"\n"
    )
}

fn location(resp: &Response) -> &str {
    assert_eq!(resp.status, 302, "a redirect: {resp:?}");
    resp.header("location").expect("Location")
}

/// The raw (still encoded) value of query parameter `name` in `url`.
fn query_param<'a>(url: &'a str, name: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn decode(value: &str) -> String {
    percent_encoding::percent_decode_str(value)
        .decode_utf8()
        .expect("UTF-8")
        .into_owned()
}

/// SigV4 query encoding: every byte except `A-Za-z0-9-._~`.
fn encode_query(value: &str) -> String {
    encode_key(value).replace('/', "%2F")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// `YYYYMMDDTHHMMSSZ` → seconds since the epoch.
fn amz_date_secs(stamp: &str) -> u64 {
    assert!(
        stamp.len() == 16 && &stamp[8..9] == "T" && stamp.ends_with('Z'),
        "{stamp}"
    );
    let n = |range: std::ops::Range<usize>| -> i64 { stamp[range].parse().expect(stamp) };
    let (y, m, d) = (n(0..4), n(4..6), n(6..8));
    // Howard Hinnant's days_from_civil.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * 86_400 + n(9..11) * 3600 + n(11..13) * 60 + n(13..15)) as u64
}

fn signed_at(url: &str) -> u64 {
    amz_date_secs(query_param(url, "X-Amz-Date").expect("X-Amz-Date"))
}

/// Polls `f` (every 20 ms) until it returns `Some`, for at most `limit`.
fn poll<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ---------------------------------------------------------------------------
// 1. The corpus through spillway to S3, GET and HEAD, path-style and virtual-hosted
// ---------------------------------------------------------------------------

#[test]
fn awkward_keys_round_trip_path_style_and_virtual_hosted() {
    let s3 = S3Server::start_with_domain(ACCESS_KEY, SECRET_KEY, "s3.localhost");
    let keys = corpus();
    for (i, key) in keys.iter().enumerate() {
        if key.storable {
            s3.put_object(
                "media",
                &format!("{KEY_PREFIX}{}", key.relative),
                &object_bytes(i, &key.relative),
            );
        }
    }
    let buckets = [
        bucket_yaml("paths", &s3.endpoint(), "    path_style: true\n"),
        bucket_yaml(
            "vhosts",
            &format!("http://s3.localhost:{}", s3.port),
            "    path_style: false\n",
        ),
    ]
    .concat();
    let routes = "  - prefix: /p\n    root: www\n    bucket: paths\n    key_prefix: sig/\n  - prefix: /v\n    root: www\n    bucket: vhosts\n    key_prefix: sig/\n";
    let proxy = start_proxy(&buckets, routes);

    let styles = [
        ("path-style", "/p", format!("{}/media/", s3.endpoint())),
        (
            "virtual-hosted",
            "/v",
            format!("http://media.s3.localhost:{}/", s3.port),
        ),
    ];
    let mut tried = 0;
    for (style, prefix, base) in &styles {
        for method in ["GET", "HEAD"] {
            for (i, key) in keys.iter().enumerate() {
                let what = format!("{style} {method} {:?} ({})", key.relative, key.label);
                let target = format!("{prefix}/{}", encode_key(&key.relative));
                let resp = request(proxy.port, method, &target, &[], b"");
                assert_eq!(resp.status, 302, "{what}: {}", resp.text());
                let link = location(&resp);
                let want = format!("{base}{KEY_PREFIX}{}?", encode_key(&key.relative));
                assert!(link.starts_with(&want), "{what}: {link}\nwant {want}...");
                assert!(
                    link.contains("X-Amz-SignedHeaders=host&X-Amz-Signature="),
                    "{what}: {link}"
                );
                assert_eq!(resp.header("cache-control"), Some("private, no-store"));

                let object = follow(link, method);
                tried += 1;
                if !key.storable {
                    // Signature accepted, object absent (a signature problem is 403).
                    assert_eq!(object.status, 404, "{what}: {}", object.text());
                    if method == "GET" {
                        assert!(object.text().contains("NoSuchKey"), "{what}");
                    }
                    continue;
                }
                assert_eq!(object.status, 200, "{what}: {link}\n{}", object.text());
                let bytes = object_bytes(i, &key.relative);
                if method == "GET" {
                    assert_eq!(object.body, bytes, "{what}");
                } else {
                    let len = bytes.len().to_string();
                    assert_eq!(
                        object.header("content-length"),
                        Some(len.as_str()),
                        "{what}"
                    );
                }
            }
        }
    }
    println!(
        "awkward keys: {} keys x 2 methods x {} styles = {tried} presigned links followed",
        keys.len(),
        styles.len()
    );
    assert_eq!(tried, keys.len() * 2 * styles.len());

    // NFC and NFD names are different keys, never normalised into one another.
    let nfc = get(proxy.port, "/p/caf%C3%A9.txt");
    let nfd = get(proxy.port, "/p/cafe%CC%81.txt");
    assert_ne!(
        follow(location(&nfc), "GET").body,
        follow(location(&nfd), "GET").body
    );
}

// ---------------------------------------------------------------------------
// 2. Differential: spillway's presigner vs aws-sigv4's full signer
// ---------------------------------------------------------------------------

const DIFF_ACCESS_KEY: &str = "AKIAIOSFODNN7EXAMPLE";
const DIFF_SECRET_KEY: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY";
/// Real session tokens are base64: `/`, `+` and `=` all need encoding in the query.
const DIFF_TOKEN: &str = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+x/y+z==";

/// aws-sigv4's presigned URL for `url` (which may carry a query already), in spillway's layout:
/// the canonical query string (sorted, encoded pairs) as the query, then the signature.
fn aws_presign(
    method: &str,
    url: &str,
    region: &str,
    time: SystemTime,
    expires: Duration,
    token: Option<&str>,
) -> String {
    use aws_sigv4::http_request::{
        sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation,
        SigningSettings, UriPathNormalizationMode,
    };
    let identity: aws_smithy_runtime_api::client::identity::Identity =
        aws_credential_types::Credentials::new(
            DIFF_ACCESS_KEY,
            DIFF_SECRET_KEY,
            token.map(str::to_owned),
            None,
            "differential",
        )
        .into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires);
    let params = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("s3")
        .time(time)
        .settings(settings)
        .build()
        .expect("signing params")
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable request");
    let (instructions, signature) = sign(signable, &params).expect("sign").into_parts();
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (encode_query(&decode(k)), encode_query(&decode(v)))
        })
        .collect();
    // The instructions carry the signature as a parameter too; it goes last, outside the
    // canonical query.
    for (name, value) in instructions.params() {
        if *name == "X-Amz-Signature" {
            assert_eq!(value, &signature);
        } else {
            pairs.push((encode_query(name), encode_query(value)));
        }
    }
    pairs.sort();
    let query: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{base}?{}&X-Amz-Signature={signature}", query.join("&"))
}

/// `Content-Disposition` as RFC 6266/5987 want it, computed independently of spillway.
fn expected_disposition(relative: &str) -> String {
    let name = relative.rsplit('/').next().unwrap_or_default();
    if name.is_empty() {
        // A key ending in `/` names no file.
        return "attachment".to_owned();
    }
    let fallback: String = name
        .chars()
        .map(|c| match c {
            '"' | '\\' => '_',
            ' ' => ' ',
            c if c.is_ascii_graphic() => c,
            _ => '_',
        })
        .collect();
    let mut star = String::new();
    for &b in name.as_bytes() {
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            star.push(b as char);
        } else {
            star.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{fallback}\"; filename*=UTF-8''{star}")
}

#[test]
fn presigner_matches_aws_sigv4_full_signer() {
    let keys = corpus();
    // One `Keys` for every case, so its per-day signing-key cache sees region and date changes.
    let shared = [
        Keys::new(DIFF_ACCESS_KEY, DIFF_SECRET_KEY, None, None, "test"),
        Keys::new(
            DIFF_ACCESS_KEY,
            DIFF_SECRET_KEY,
            Some(DIFF_TOKEN.to_owned()),
            None,
            "test",
        ),
    ];
    let ttls = [1, 300, 3600, 604_800].map(Duration::from_secs);
    let mut compared = 0usize;
    for region in ["us-east-1", "ap-southeast-2"] {
        // (label, addressing, expected base URL, expected Host)
        let endpoints = [
            (
                "custom endpoint with a port, path-style",
                Addressing {
                    endpoint: Some("http://127.0.0.1:9000"),
                    ..Addressing::default()
                },
                "http://127.0.0.1:9000/media/".to_owned(),
                "127.0.0.1:9000".to_owned(),
            ),
            (
                "custom endpoint with a port, virtual-hosted",
                Addressing {
                    endpoint: Some("http://s3.localhost:9000"),
                    path_style: Some(false),
                    ..Addressing::default()
                },
                "http://media.s3.localhost:9000/".to_owned(),
                "media.s3.localhost:9000".to_owned(),
            ),
            (
                "https endpoint with its default port written out",
                Addressing {
                    endpoint: Some("https://s3.example.com:443"),
                    ..Addressing::default()
                },
                "https://s3.example.com:443/media/".to_owned(),
                "s3.example.com".to_owned(),
            ),
            (
                "AWS virtual-hosted",
                Addressing::default(),
                format!("https://media.s3.{region}.amazonaws.com/"),
                format!("media.s3.{region}.amazonaws.com"),
            ),
        ];
        for (label, addressing, base, host) in &endpoints {
            let (origin, path_prefix) = {
                let after = base.find("://").expect("scheme") + 3;
                let slash = after + base[after..].find('/').expect("path");
                (&base[..slash], &base[slash..])
            };
            for (t, keys_used) in shared.iter().enumerate() {
                let token = keys_used.session_token.as_deref();
                let own_keys = Keys::new(
                    DIFF_ACCESS_KEY,
                    DIFF_SECRET_KEY,
                    token.map(str::to_owned),
                    None,
                    "test",
                );
                let bucket = Bucket::new(
                    "media",
                    region,
                    addressing,
                    Arc::new(CredentialCell::with(own_keys)),
                )
                .expect("bucket");
                assert_eq!(&bucket.base_url(), base, "{label}");
                for method in ["GET", "HEAD"] {
                    for (i, key) in keys.iter().enumerate() {
                        // Consecutive cases fall on consecutive days, so the cached day key
                        // must be replaced every time.
                        let time = UNIX_EPOCH
                            + Duration::from_secs(1_700_000_000 + (i as u64 * 86_399) + t as u64);
                        let ttl = ttls[(i + t) % ttls.len()];
                        let what = format!(
                            "{region} {label} token={} {method} {:?}",
                            token.is_some(),
                            key.relative
                        );
                        let path =
                            format!("{path_prefix}{KEY_PREFIX}{}", encode_key(&key.relative));
                        let own = sigv4::presign(
                            keys_used,
                            &Presign {
                                method,
                                origin,
                                host,
                                path: &path,
                                extra_query: &[],
                                region,
                                time,
                                expires: ttl,
                            },
                        );
                        let aws = aws_presign(
                            method,
                            &format!("{origin}{path}"),
                            region,
                            time,
                            ttl,
                            token,
                        );
                        assert_eq!(own, aws, "{what}");
                        let through_bucket = bucket
                            .presign(
                                method,
                                &ObjectKey::new(KEY_PREFIX, &key.relative),
                                time,
                                ttl,
                                false,
                            )
                            .expect("presign");
                        assert_eq!(through_bucket.url, own, "{what}: Bucket::presign");
                        assert_eq!(through_bucket.expires_at, time + ttl);
                        compared += 1;

                        // With `response-content-disposition` (the attachment case).
                        let disposition = expected_disposition(&key.relative);
                        let extra = encode_query(&disposition);
                        let own = sigv4::presign(
                            keys_used,
                            &Presign {
                                method,
                                origin,
                                host,
                                path: &path,
                                extra_query: &[("response-content-disposition", &extra)],
                                region,
                                time,
                                expires: ttl,
                            },
                        );
                        let aws = aws_presign(
                            method,
                            &format!("{origin}{path}?response-content-disposition={extra}"),
                            region,
                            time,
                            ttl,
                            token,
                        );
                        assert_eq!(own, aws, "{what} with response-content-disposition");
                        let through_bucket = bucket
                            .presign(
                                method,
                                &ObjectKey::new(KEY_PREFIX, &key.relative),
                                time,
                                ttl,
                                true,
                            )
                            .expect("presign");
                        assert_eq!(
                            through_bucket.url, own,
                            "{what}: Bucket::presign with attachment"
                        );
                        compared += 1;
                    }
                }
            }
        }
    }
    assert_eq!(compared, 2 * 4 * 2 * 2 * keys.len() * 2);

    // Either side of midnight, a leap day and a century (the date in the scope changes).
    for secs in [951_868_799, 951_868_800, 4_102_444_799, 4_102_444_800] {
        let time = UNIX_EPOCH + Duration::from_secs(secs);
        for keys_used in &shared {
            let token = keys_used.session_token.as_deref();
            let path = "/media/sig/a%20b%2Bc";
            let own = sigv4::presign(
                keys_used,
                &Presign {
                    method: "GET",
                    origin: "http://127.0.0.1:9000",
                    host: "127.0.0.1:9000",
                    path,
                    extra_query: &[],
                    region: "eu-west-1",
                    time,
                    expires: Duration::from_secs(300),
                },
            );
            let url = format!("http://127.0.0.1:9000{path}");
            let aws = aws_presign(
                "GET",
                &url,
                "eu-west-1",
                time,
                Duration::from_secs(300),
                token,
            );
            assert_eq!(own, aws, "signed at {secs}");
            compared += 1;
        }
    }
    println!("differential: {compared} presigned URLs identical to aws-sigv4's");
}

// ---------------------------------------------------------------------------
// 3. Session tokens
// ---------------------------------------------------------------------------

#[test]
fn a_session_token_is_signed_into_the_link() {
    const TOKEN: &str = "FwoGZXIvYXdzEJr//////////wEaDO+token/with+slash==";
    let s3 = S3Server::start(ACCESS_KEY, SECRET_KEY);
    s3.put_object("media", "uploads/doc one.txt", b"token bytes");
    let extra = "    path_style: true\n";
    let bucket = bucket_yaml("tok", &s3.endpoint(), extra).replace(
        "      secret_access_key",
        &format!("      session_token: \"{TOKEN}\"\n      secret_access_key"),
    );
    let proxy = start_proxy(
        &bucket,
        "  - prefix: /tok\n    root: www\n    bucket: tok\n    key_prefix: uploads/\n",
    );

    let resp = get(proxy.port, "/tok/doc%20one.txt");
    let link = location(&resp);
    assert_eq!(
        query_param(link, "X-Amz-Security-Token"),
        Some(encode_query(TOKEN).as_str()),
        "{link}"
    );
    assert!(
        link.contains("&X-Amz-Security-Token=") && link.contains("&X-Amz-SignedHeaders=host&"),
        "sorted into the canonical query: {link}"
    );
    let object = follow(link, "GET");
    assert_eq!(object.status, 200, "{}", object.text());
    assert_eq!(object.body, b"token bytes");

    // s3s never validates the token itself (there is no STS behind it), but it is part of the
    // canonical query: changing or dropping it breaks the signature.
    let encoded = encode_query(TOKEN);
    let changed = link.replace(&encoded, &encode_query(&TOKEN.replace('F', "G")));
    let dropped = link.replace(&format!("&X-Amz-Security-Token={encoded}"), "");
    for (what, tampered) in [("changed", changed), ("dropped", dropped)] {
        assert_ne!(tampered, link);
        let refused = follow(&tampered, "GET");
        assert_eq!(refused.status, 403, "token {what}: {}", refused.text());
        assert!(
            refused.text().contains("SignatureDoesNotMatch"),
            "token {what}: {}",
            refused.text()
        );
    }
}

// ---------------------------------------------------------------------------
// 4. Expiry
// ---------------------------------------------------------------------------

#[test]
fn an_expired_link_is_refused_by_s3() {
    let stack = Stack::start_with(StackOptions {
        extra_routes: "  - prefix: /short\n    root: www/short\n    bucket: media\n    key_prefix: uploads/\n    ttl: 1s\n",
        extra_roots: &["short"],
        ..StackOptions::default()
    });
    stack.s3.put_object("media", "uploads/brief.txt", b"brief");

    // X-Amz-Date has whole seconds, so a 1 s link signed late in a second may be dead on
    // arrival: take links until one is seen working, then watch that one expire.
    let link = poll(Duration::from_secs(5), "a working 1 s link", || {
        let resp = get(stack.port(), "/short/brief.txt");
        let link = location(&resp).to_owned();
        assert_eq!(query_param(&link, "X-Amz-Expires"), Some("1"), "{link}");
        let object = follow(&link, "GET");
        if object.status == 200 {
            assert_eq!(object.body, b"brief");
            return Some(link);
        }
        assert!(
            object.text().contains("Request has expired"),
            "{}",
            object.text()
        );
        None
    });
    let refused = poll(Duration::from_secs(5), "the link expiring", || {
        let object = follow(&link, "GET");
        match object.status {
            200 => None,
            _ => Some(object),
        }
    });
    assert_eq!(refused.status, 403, "{}", refused.text());
    let text = refused.text();
    assert!(
        text.contains("AccessDenied") && text.contains("Request has expired"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------
// 5. Signing windows
// ---------------------------------------------------------------------------

/// `private, max-age=N` → N.
fn private_max_age(resp: &Response) -> u64 {
    let value = resp.header("cache-control").expect("Cache-Control");
    value
        .strip_prefix("private, max-age=")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not `private, max-age=N`: {value}"))
}

/// Waits for the wall clock to enter its next second.
fn next_second() {
    let now = unix_now();
    poll(Duration::from_secs(2), "the next second", || {
        (unix_now() > now).then_some(())
    });
}

#[test]
fn a_signing_window_gives_one_cacheable_link_per_window() {
    let stack = Stack::start_with(StackOptions {
        extra_routes: "  - prefix: /win\n    root: www/win\n    bucket: media\n    key_prefix: uploads/\n    ttl: 1h\n    sign_window: 10m\n",
        extra_roots: &["win"],
        ..StackOptions::default()
    });
    stack
        .s3
        .put_object("media", "uploads/cached.pdf", b"cacheable");

    // One round: several requests, spanning a change of second. Err if a window boundary was
    // crossed meanwhile (then the links legitimately differ).
    let round = || -> Result<String, ()> {
        let before = unix_now();
        let first = get(stack.port(), "/win/cached.pdf");
        let link = location(&first).to_owned();
        let start = signed_at(&link);
        assert_eq!(start % 600, 0, "signed at a window start: {link}");
        assert!(
            start <= before && before - start < 600,
            "{start} vs {before}"
        );
        assert_eq!(query_param(&link, "X-Amz-Expires"), Some("3600"));
        let max_age = private_max_age(&first);
        assert!(
            max_age <= start + 3600 - before - 30,
            "max-age {max_age} outlives the link (window start {start}, now {before})"
        );
        assert!(max_age + 5 >= 3600 - 600 - 30, "max-age {max_age}");
        for i in 0..4 {
            if i == 2 {
                next_second();
            }
            let again = get(stack.port(), "/win/cached.pdf");
            let again_link = location(&again);
            if signed_at(again_link) != start {
                return Err(());
            }
            assert_eq!(again_link, link, "same window, same link");
        }
        Ok(link)
    };
    let link = round()
        .or_else(|()| round())
        .expect("two window boundaries in a row");
    let object = follow(&link, "GET");
    assert_eq!(
        object.status,
        200,
        "a link signed at the window start works: {}",
        object.text()
    );
    assert_eq!(object.body, b"cacheable");
}

#[test]
fn without_a_window_every_second_gets_a_fresh_uncacheable_link() {
    let stack = Stack::start();
    let first = get(stack.port(), "/uploads/fresh.pdf");
    assert_eq!(first.header("cache-control"), Some("private, no-store"));
    let first_link = location(&first).to_owned();
    let first_at = signed_at(&first_link);
    let second = poll(Duration::from_secs(3), "a link from a later second", || {
        let resp = get(stack.port(), "/uploads/fresh.pdf");
        (signed_at(location(&resp)) != first_at).then_some(resp)
    });
    assert_eq!(second.header("cache-control"), Some("private, no-store"));
    let second_link = location(&second);
    assert!(signed_at(second_link) > first_at);
    assert_ne!(
        query_param(second_link, "X-Amz-Signature"),
        query_param(&first_link, "X-Amz-Signature")
    );
}

// ---------------------------------------------------------------------------
// 6. content_disposition: attachment
// ---------------------------------------------------------------------------

#[test]
fn attachment_links_make_s3_send_content_disposition() {
    let stack = Stack::start_with(StackOptions {
        extra_routes: "  - prefix: /dl\n    root: www/dl\n    bucket: media\n    key_prefix: uploads/\n    content_disposition: attachment\n    rules:\n      - match: \"inline/**\"\n        access: private\n        content_disposition: inline\n",
        extra_roots: &["dl"],
        ..StackOptions::default()
    });
    let cases = [
        ("report.pdf", "attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf"),
        (
            "sub/r\u{e9}sum\u{e9} 2024.pdf",
            "attachment; filename=\"r_sum_ 2024.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%202024.pdf",
        ),
        (
            "say \"hi\" \u{1f44b}.txt",
            "attachment; filename=\"say _hi_ _.txt\"; filename*=UTF-8''say%20%22hi%22%20%F0%9F%91%8B.txt",
        ),
    ];
    for (i, (relative, header)) in cases.iter().enumerate() {
        assert_eq!(expected_disposition(relative), *header);
        let bytes = object_bytes(i, relative);
        stack
            .s3
            .put_object("media", &format!("uploads/{relative}"), &bytes);
        let target = format!("/dl/{}", encode_key(relative));
        for method in ["GET", "HEAD"] {
            let resp = request(stack.port(), method, &target, &[], b"");
            let link = location(&resp);
            let param = query_param(link, "response-content-disposition")
                .unwrap_or_else(|| panic!("no response-content-disposition: {link}"));
            assert_eq!(decode(param), *header, "{link}");
            assert!(link.ends_with(&format!(
                "response-content-disposition={param}&X-Amz-Signature={}",
                query_param(link, "X-Amz-Signature").unwrap()
            )));
            let object = follow(link, method);
            assert_eq!(object.status, 200, "{method} {relative}: {}", object.text());
            if method == "GET" {
                assert_eq!(object.body, bytes);
                assert_eq!(
                    object.header("content-disposition"),
                    Some(*header),
                    "{relative}"
                );
            } else {
                // s3s applies response-* overrides to GetObject only: the signed parameter is
                // accepted on HEAD, not echoed.
                assert_eq!(
                    object.header("content-length"),
                    Some(bytes.len().to_string().as_str())
                );
            }
        }
    }

    // A rule can take it back.
    stack
        .s3
        .put_object("media", "uploads/inline/view.pdf", b"inline");
    let resp = get(stack.port(), "/dl/inline/view.pdf");
    let link = location(&resp);
    assert_eq!(
        query_param(link, "response-content-disposition"),
        None,
        "{link}"
    );
    let object = follow(link, "GET");
    assert_eq!(object.status, 200, "{}", object.text());
    assert_eq!(object.header("content-disposition"), None);
}

// ---------------------------------------------------------------------------
// 7. HEAD
// ---------------------------------------------------------------------------

#[test]
fn head_links_are_signed_for_head_only() {
    let stack = Stack::start();
    stack
        .s3
        .put_object("media", "uploads/doc.pdf", b"0123456789");
    // curl -I -L: HEAD to spillway, HEAD to the Location.
    let head = request(stack.port(), "HEAD", "/uploads/doc.pdf", &[], b"");
    let head_link = location(&head).to_owned();
    let object = follow(&head_link, "HEAD");
    assert_eq!(object.status, 200);
    assert_eq!(object.header("content-length"), Some("10"));

    let refused = follow(&head_link, "GET");
    assert_eq!(
        refused.status,
        403,
        "GET on a HEAD-signed link: {}",
        refused.text()
    );
    assert!(
        refused.text().contains("SignatureDoesNotMatch"),
        "{}",
        refused.text()
    );

    let get_link = location(&get(stack.port(), "/uploads/doc.pdf")).to_owned();
    assert_eq!(follow(&get_link, "GET").body, b"0123456789");
    assert_eq!(
        follow(&get_link, "HEAD").status,
        403,
        "HEAD on a GET-signed link"
    );
}

// ---------------------------------------------------------------------------
// 8. public_url
// ---------------------------------------------------------------------------

#[test]
fn public_objects_go_to_public_url_private_ones_to_s3() {
    let s3 = S3Server::start(ACCESS_KEY, SECRET_KEY);
    s3.put_object("media", "uploads/doc one.pdf", b"private bytes");
    let bucket = bucket_yaml(
        "cdn",
        &s3.endpoint(),
        "    public_url: \"http://cdn.example.test/media\"\n",
    );
    let proxy = start_proxy(
        &bucket,
        "  - prefix: /c\n    root: www\n    bucket: cdn\n    key_prefix: uploads/\n    rules:\n      - match: \"pub/**\"\n        access: public\n",
    );

    let public = get(proxy.port, "/c/pub/a%20b+c%C3%A9.png");
    assert_eq!(
        location(&public),
        "http://cdn.example.test/media/uploads/pub/a%20b%2Bc%C3%A9.png"
    );
    assert_eq!(public.header("cache-control"), Some("public, max-age=300"));

    let private = get(proxy.port, "/c/doc%20one.pdf");
    let link = location(&private);
    let want = format!("{}/media/uploads/doc%20one.pdf?", s3.endpoint());
    assert!(link.starts_with(&want), "{link}");
    assert!(link.contains("X-Amz-Signature="), "{link}");
    let object = follow(link, "GET");
    assert_eq!(object.status, 200, "{}", object.text());
    assert_eq!(object.body, b"private bytes");
}

// ---------------------------------------------------------------------------
// 9. The AWS provider chain, in a temp HOME
// ---------------------------------------------------------------------------

/// A config whose bucket has no `credentials:` and whose only route is private (by default),
/// plus an empty HOME; returns (temp dir, config path, HOME).
fn chain_config() -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path().join("home");
    std::fs::create_dir_all(dir.path().join("www")).expect("www");
    std::fs::create_dir_all(&home).expect("home");
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        "listen: \"127.0.0.1:0\"\nbuckets:\n  media:\n    bucket: media\n    region: us-east-1\n    endpoint: \"http://127.0.0.1:9\"\nroutes:\n  - prefix: /p\n    root: www\n    bucket: media\n",
    )
    .expect("write config");
    let path = |p: std::path::PathBuf| p.display().to_string();
    (dir, path(config), path(home))
}

/// The environment that keeps the chain off the network and out of the real HOME.
fn hermetic<'a>(
    home: &'a str,
    config_file: &'a str,
    credentials_file: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("HOME", home),
        ("AWS_CONFIG_FILE", config_file),
        ("AWS_SHARED_CREDENTIALS_FILE", credentials_file),
        ("AWS_EC2_METADATA_DISABLED", "true"),
    ]
}

fn check_output(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_signs_with_environment_credentials() {
    let (_dir, config, home) = chain_config();
    let (cfg, creds) = (
        format!("{home}/.aws/config"),
        format!("{home}/.aws/credentials"),
    );
    let mut env = hermetic(&home, &cfg, &creds);
    env.push(("AWS_ACCESS_KEY_ID", "AKIDFROMENVIRONMENT"));
    env.push(("AWS_SECRET_ACCESS_KEY", "env-secret-value"));
    let out = run_cli_env(&["check", "--config", &config], &env);
    let (stdout, stderr) = check_output(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(signs as AKIDFROMENVIRONMENT from aws provider chain)"),
        "{stdout}"
    );
    assert!(stdout.contains("access private (ttl 5m)"), "{stdout}");
    assert!(!stdout.contains("env-secret-value") && !stderr.contains("env-secret-value"));
}

#[test]
fn check_signs_with_the_default_profile_in_home() {
    let (_dir, config, home) = chain_config();
    let aws = format!("{home}/.aws");
    std::fs::create_dir_all(&aws).expect(".aws");
    let (cfg, creds) = (format!("{aws}/config"), format!("{aws}/credentials"));
    std::fs::write(&cfg, "[default]\nregion = eu-west-1\n").expect("config");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = AKIDFROMPROFILE\naws_secret_access_key = profile-secret-value\n\n[other]\naws_access_key_id = AKIDOTHERPROFILE\naws_secret_access_key = other\n",
    )
    .expect("credentials");
    let out = run_cli_env(
        &["check", "--config", &config],
        &hermetic(&home, &cfg, &creds),
    );
    let (stdout, stderr) = check_output(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("(signs as AKIDFROMPROFILE from aws provider chain)"),
        "{stdout}"
    );
    assert!(!stdout.contains("profile-secret-value") && !stderr.contains("profile-secret-value"));
}

/// A provider that never answers (here container credentials at a listener that says nothing)
/// costs `check` a bounded wait and a message that says so.
#[test]
fn a_chain_that_never_answers_is_given_up_on() {
    let (_dir, config, home) = chain_config();
    let (cfg, creds) = (
        format!("{home}/.aws/config"),
        format!("{home}/.aws/credentials"),
    );
    std::fs::create_dir_all(format!("{home}/.aws")).expect(".aws");
    std::fs::write(&cfg, "").expect("config");
    std::fs::write(&creds, "").expect("credentials");
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("http://{}/credentials", silent.local_addr().expect("addr"));
    let mut env = hermetic(&home, &cfg, &creds);
    env.push(("AWS_CONTAINER_CREDENTIALS_FULL_URI", &uri));
    let out = run_cli_env(&["check", "--config", &config], &env);
    let (stdout, stderr) = check_output(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(
        stderr,
        format!(
            "spillway: {config}: routes[0]: private objects need credentials to presign, but \
             bucket \"media\" has no `credentials:` and the AWS provider chain (environment, \
             profile, web identity, container, instance metadata) found none: no answer within \
             5s from a provider that asks over the network (instance metadata, container \
             credentials or STS) at line 8 column 5\n"
        )
    );
}

#[test]
fn check_fails_fast_when_the_chain_finds_nothing() {
    let (_dir, config, home) = chain_config();
    let (cfg, creds) = (
        format!("{home}/.aws/config"),
        format!("{home}/.aws/credentials"),
    );
    let started = Instant::now();
    let out = run_cli_env(
        &["check", "--config", &config],
        &hermetic(&home, &cfg, &creds),
    );
    let elapsed = started.elapsed();
    let (stdout, stderr) = check_output(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("routes[0]"), "{stderr}");
    assert!(
        stderr.contains("the AWS provider chain (environment, profile, web identity, container, instance metadata) found none"),
        "{stderr}"
    );
    assert!(
        stderr.contains("bucket \"media\" has no `credentials:`"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}
