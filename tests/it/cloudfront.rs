//! Private objects through the CDN: CloudFront-signed redirects, byte-identical to botocore's
//! `CloudFrontSigner` for RSA-SHA1 keys (canned and custom policies, odd keys), ECDSA ones
//! verified with the public key, and every link accepted by a CloudFront-like checker until it
//! expires and for its own path only.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use support::{get, Spillway};

const DISTRIBUTION: &str = "https://d111111abcdef8.cloudfront.net/media";
const KEY_ID: &str = "K2JCJMDEHXQW5F";

/// Requested paths below `/media/` whose keys need encoding, and what they test.
const ODD: [&str; 7] = [
    "plain.jpg",
    "a%20b.jpg",                   // a space
    "a+b.jpg",                     // a plus, kept
    "100%25.jpg",                  // a percent sign
    "%C3%A9t%C3%A9/caf%C3%A9.jpg", // unicode
    "hash%23tag.jpg",              // `#`
    "what%3F.jpg",                 // `?`
];

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it/support/cloudfront.py")
}

/// Runs the Python side with `args`, `input` on stdin; its stdout lines.
fn python(args: &[&str], input: &str) -> Vec<String> {
    let mut child = Command::new("python3")
        .arg(script())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with botocore and cryptography: bash .ci/run installs them)");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "cloudfront.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A new key pair of `kind` (rsa, ecdsa) in `dir`: (private, public) PEM paths.
fn keygen(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{kind}.pem")),
        dir.join(format!("{kind}.pub")),
    );
    python(
        &[
            "keygen",
            kind,
            key.to_str().unwrap(),
            public.to_str().unwrap(),
        ],
        "",
    );
    (key, public)
}

/// spillway with a private route `/media` (nothing on disk: every path is a miss) on a bucket
/// signed for CloudFront with `key`, and `cloudfront_extra` lines in its block.
fn start(key: &Path, route_extra: &str, cloudfront_extra: &str) -> Spillway {
    Spillway::start_custom(&[], |port, dir| {
        std::fs::create_dir_all(dir.join("www")).expect("mkdir www");
        format!(
            "listen: \"127.0.0.1:{port}\"\nbuckets:\n  media:\n    bucket: example-media\n    \
             region: eu-west-1\n    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      \
             key_pair_id: {KEY_ID}\n      private_key: {key}\n{cloudfront_extra}routes:\n  - \
             prefix: /media\n    root: www\n    bucket: media\n    access: private\n    ttl: 5m\n{route_extra}",
            key = key.display()
        )
    })
}

/// The `Location` of a GET of `/media/{path}`, which must be a signed redirect.
fn location(spillway: &Spillway, path: &str) -> String {
    let response = get(spillway.port, &format!("/media/{path}"));
    assert_eq!(response.status, 302, "{path}: {}", response.text());
    response.header("location").expect("a Location").to_owned()
}

/// The URL before the signing parameters, and the value of `name` among them.
fn split(url: &str, first: &str) -> (String, String) {
    let at = url
        .find(&format!("?{first}="))
        .or_else(|| url.find(&format!("&{first}=")));
    let at = at.unwrap_or_else(|| panic!("{first} in {url}"));
    let value = url[at + first.len() + 2..]
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    (url[..at].to_owned(), value)
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[test]
fn rsa_links_are_byte_identical_to_botocores_canned_and_custom() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "rsa");
    for (policy, extra) in [
        ("canned", ""),
        (
            "custom",
            "      policy: custom\n      ip_range: 192.0.2.0/24\n      not_before: true\n",
        ),
    ] {
        let spillway = start(&key, "", extra);
        let mut cases = Vec::new();
        let mut locations = Vec::new();
        for path in ODD {
            let signed = location(&spillway, path);
            let case = match policy {
                "canned" => {
                    let (resource, expires) = split(&signed, "Expires");
                    serde_json::json!({"resource": resource, "expires": expires.parse::<u64>().unwrap(), "policy": "canned"})
                }
                _ => {
                    let (resource, encoded) = split(&signed, "Policy");
                    let policy = decode_policy(&encoded);
                    let statement: serde_json::Value = serde_json::from_str(&policy).unwrap();
                    let condition = &statement["Statement"][0]["Condition"];
                    serde_json::json!({
                        "resource": resource,
                        "expires": condition["DateLessThan"]["AWS:EpochTime"],
                        "not_before": condition["DateGreaterThan"]["AWS:EpochTime"],
                        "ip_range": "192.0.2.0/24",
                        "policy": "custom",
                    })
                }
            };
            cases.push(case);
            locations.push(signed);
        }
        let input = serde_json::Value::Array(cases).to_string();
        let botocore = python(&["botocore", key.to_str().unwrap(), KEY_ID], &input);
        assert_eq!(locations, botocore, "{policy}");
        // The keys are encoded once, as the proxy's public URLs are (a space %20, `+` %2B).
        assert!(
            locations[1].starts_with(&format!("{DISTRIBUTION}/a%20b.jpg?")),
            "{}",
            locations[1]
        );
        assert!(
            locations[2].starts_with(&format!("{DISTRIBUTION}/a%2Bb.jpg?")),
            "{}",
            locations[2]
        );
        let literals = [
            (3, "100%25.jpg"),
            (4, "%C3%A9t%C3%A9/caf%C3%A9.jpg"),
            (5, "hash%23tag.jpg"),
            (6, "what%3F.jpg"),
        ];
        for (i, literal) in literals {
            let start = format!("{DISTRIBUTION}/{literal}?");
            assert!(locations[i].starts_with(&start), "{}", locations[i]);
        }
        // And CloudFront would take each of them now, from an address in the range.
        let verdicts = check(&public, &locations, now(), "192.0.2.7");
        assert!(
            verdicts.iter().all(|v| v == "accept"),
            "{policy}: {verdicts:?}"
        );
        if policy == "custom" {
            let elsewhere = check(&public, &locations[..1], now(), "198.51.100.1");
            assert_eq!(elsewhere, ["reject: another address"]);
        }
    }
}

/// A `Policy` parameter's JSON, CloudFront's base64 undone.
fn decode_policy(encoded: &str) -> String {
    use base64::Engine as _;
    let standard: String = encoded
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(standard)
        .expect("base64");
    String::from_utf8(bytes).expect("UTF-8")
}

/// The policy `spillway explain` shows for `/media/{path}`.
fn explain_policy(spillway: &Spillway, path: &str) -> String {
    let config = spillway.config_path();
    let out = support::run_cli(&[
        "explain",
        "--config",
        config.to_str().unwrap(),
        &format!("/media/{path}"),
    ]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find_map(|l| l.strip_prefix("policy"))
        .map(|p| p.trim().to_owned())
        .unwrap_or_else(|| panic!("no policy in:\n{text}"))
}

/// What the CloudFront-like checker says of each `url`, requested as signed, at `now`.
fn check(public: &Path, urls: &[String], now: u64, client_ip: &str) -> Vec<String> {
    check_requests(
        public,
        urls.iter().map(|u| (u.clone(), u.clone())),
        now,
        client_ip,
    )
}

fn check_requests(
    public: &Path,
    requests: impl Iterator<Item = (String, String)>,
    now: u64,
    client_ip: &str,
) -> Vec<String> {
    let requests: Vec<serde_json::Value> = requests
        .map(|(url, requested)| {
            serde_json::json!({"url": url, "requested": requested, "now": now, "client_ip": client_ip})
        })
        .collect();
    python(
        &["check", public.to_str().unwrap()],
        &serde_json::Value::Array(requests).to_string(),
    )
}

#[test]
fn ecdsa_links_verify_and_are_refused_after_expiry_and_for_other_paths() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "ecdsa");
    let spillway = start(&key, "", "");
    let locations: Vec<String> = ODD.iter().map(|p| location(&spillway, p)).collect();
    let verdicts = check(&public, &locations, now(), "203.0.113.9");
    assert!(verdicts.iter().all(|v| v == "accept"), "{verdicts:?}");
    // One second after it expires, no more.
    let (_, expires) = split(&locations[0], "Expires");
    let expires: u64 = expires.parse().unwrap();
    assert_eq!(
        check(&public, &locations[..1], expires - 1, "203.0.113.9"),
        ["accept"]
    );
    assert_eq!(
        check(&public, &locations[..1], expires + 1, "203.0.113.9"),
        ["reject: expired"]
    );
    // The same signature for any other object: refused.
    let other = locations[0].replace("/plain.jpg?", "/other.jpg?");
    let verdict = check_requests(
        &public,
        std::iter::once((locations[0].clone(), other)),
        now(),
        "203.0.113.9",
    );
    assert_eq!(verdict, ["reject: the policy is for another resource"]);
    // A tampered signature: refused.
    let (signed, signature) = split(&locations[0], "Signature");
    let flipped: String = signature
        .chars()
        .enumerate()
        .map(|(i, c)| match (i, c) {
            (10, 'A') => 'B',
            (10, _) => 'A',
            (_, c) => c,
        })
        .collect();
    let tampered = locations[0].replace(&signature, &flipped);
    assert!(signed.contains("Expires="));
    assert_eq!(
        check(&public, &[tampered], now(), "203.0.113.9"),
        ["reject: bad signature"]
    );
}

#[test]
fn links_keep_to_the_signing_window_and_say_how_long_they_may_be_cached() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "ecdsa");
    let spillway = start(&key, "    sign_window: 1m\n", "");
    let first = get(spillway.port, "/media/plain.jpg");
    let second = get(spillway.port, "/media/plain.jpg");
    // ECDSA signatures differ each time they are made: the same URL means it was made once.
    assert_eq!(first.header("location"), second.header("location"));
    let (_, expires) = split(first.header("location").unwrap(), "Expires");
    let left = expires.parse::<u64>().unwrap() - now();
    let cache_control = first.header("cache-control").unwrap().to_owned();
    let max_age: u64 = cache_control
        .strip_prefix("private, max-age=")
        .unwrap_or_else(|| panic!("{cache_control}"))
        .parse()
        .unwrap();
    assert!(
        max_age < left && max_age + 120 > left,
        "{cache_control} with {left}s left"
    );
    // `explain` shows the same link (the window's) and the policy CloudFront rebuilds for it
    // (asked again if a new window began between the two).
    let canned = |signed: &str| {
        let (resource, expires) = split(signed, "Expires");
        format!(
            "{{\"Statement\":[{{\"Resource\":\"{resource}\",\"Condition\":{{\"DateLessThan\":{{\"AWS:EpochTime\":{expires}}}}}}}]}}"
        )
    };
    let agreed = (0..2).any(|_| {
        let signed = location(&spillway, "plain.jpg");
        explain_policy(&spillway, "plain.jpg") == canned(&signed)
    });
    assert!(agreed, "explain's policy is not the served link's");
}

#[test]
fn cloudfront_settings_are_checked_where_they_are_written() {
    let dir = tempfile::tempdir().unwrap();
    let (key, _) = keygen(dir.path(), "rsa");
    let config = dir.path().join("proxy.yaml");
    let check = |bucket: &str| {
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        let out = support::check_config(
            &config,
            &format!("listen: \"127.0.0.1:0\"\nbuckets:\n  media:\n    bucket: example-media\n    region: eu-west-1\n{bucket}routes:\n  - prefix: /media\n    root: www\n    bucket: media\n    access: private\n"),
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let key = key.display();
    for (bucket, said) in [
        (
            format!("    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n"),
            "buckets.media.cloudfront: signs links on `public_url`, which is not set: set it to the distribution's URL (like https://d111111abcdef8.cloudfront.net/media) at line 7 column 7".to_owned(),
        ),
        (
            format!("    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: k-1\n      private_key: {key}\n"),
            "buckets.media.cloudfront.key_pair_id: \"k-1\" is not a CloudFront key id (capital letters and digits, like K2JCJMDEHXQW5F: the ID of the public key in CloudFront's key group) at line 8 column 20".to_owned(),
        ),
        (
            format!("    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: missing.pem\n"),
            format!("buckets.media.cloudfront.private_key: cannot read a private key from {}: No such file or directory (os error 2) at line 9 column 20", dir.path().join("missing.pem").display()),
        ),
        (
            format!("    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      ip_range: 192.0.2.0/24\n"),
            "buckets.media.cloudfront.ip_range: is a condition of a custom policy: set `policy: custom` (a canned policy has an expiry only) at line 10 column 17".to_owned(),
        ),
        (
            format!("    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      cookies: true\n"),
            "buckets.media.cloudfront.cookies: needs `cookie_domain:`: a domain both this site and the distribution are in (like example.com for www.example.com and cdn.example.com), or browsers refuse the cookies at line 10 column 16".to_owned(),
        ),
        (
            format!("    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      cookies: true\n      cookie_domain: example.com\n"),
            "buckets.media.cloudfront.cookie_domain: \"example.com\" does not contain the distribution's host \"d111111abcdef8.cloudfront.net\": browsers send cookies for a domain only to hosts in it (give the distribution an alternate domain name in your site, like cdn.example.com) at line 11 column 22".to_owned(),
        ),
    ] {
        let (code, stderr, _) = check(&bucket);
        assert_eq!(code, Some(1), "{bucket}");
        assert!(stderr.contains(&said), "{bucket}\n--- said ---\n{stderr}");
    }
    // IPv6 ranges: CloudFront's condition takes IPv4 only.
    let (code, stderr, _) = check(&format!(
        "    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      policy: custom\n      ip_range: \"2001:db8::/32\"\n"
    ));
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("buckets.media.cloudfront.ip_range: \"2001:db8::/32\" is an IPv6 range: CloudFront's IpAddress condition takes IPv4 only (and a distribution restricted by address should not enable IPv6) at line 11 column 17"),
        "{stderr}"
    );
    // A range written with host bits is the network it names.
    let (code, stderr, stdout) = check(&format!(
        "    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      policy: custom\n      ip_range: 203.0.113.5/24\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains("(RSA 2048 bits, SHA-1; custom policy, clients in 203.0.113.0/24)"),
        "{stdout}"
    );
    // Cookies open a whole directory: a route that asks the application per object refuses them.
    let out = support::check_config(
        &config,
        &format!(
            "listen: \"127.0.0.1:0\"\nupstreams:\n  app:\n    address: \"127.0.0.1:1\"\nbuckets:\n  media:\n    \
             bucket: example-media\n    region: eu-west-1\n    public_url: \"https://cdn.example.com/media\"\n    \
             cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n      cookies: true\n      \
             cookie_domain: example.com\nroutes:\n  - prefix: /media\n    root: www\n    bucket: media\n    \
             access: private\n    authorize:\n      upstream: app\n      path: /may-i\n"
        ),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("routes[0].authorize: asks the application about each object, but bucket \"media\" sets CloudFront signed cookies, which open the object's whole directory, subdirectories included; drop `cookies: true` there, or the check here at line 21 column 7"),
        "{said}"
    );
    // A good one: `check` names the key, its kind and the policy.
    let (code, stderr, stdout) = check(&format!(
        "    public_url: \"{DISTRIBUTION}\"\n    cloudfront:\n      key_pair_id: {KEY_ID}\n      private_key: {key}\n"
    ));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("  private objects via {DISTRIBUTION}/, CloudFront-signed with key {KEY_ID} (RSA 2048 bits, SHA-1; canned policy)\n")),
        "{stdout}"
    );
}

#[test]
fn signed_cookies_open_the_objects_directory_and_below_and_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let (key, public) = keygen(dir.path(), "rsa");
    let spillway = Spillway::start_custom(&[], |port, dir| {
        std::fs::create_dir_all(dir.join("www")).expect("mkdir www");
        format!(
            "listen: \"127.0.0.1:{port}\"\nbuckets:\n  media:\n    bucket: example-media\n    \
             region: eu-west-1\n    public_url: \"https://cdn.example.com/media\"\n    cloudfront:\n      \
             key_pair_id: {KEY_ID}\n      private_key: {key}\n      cookies: true\n      \
             cookie_domain: example.com\nroutes:\n  - prefix: /media\n    root: www\n    \
             bucket: media\n    access: private\n    ttl: 5m\n",
            key = key.display()
        )
    });
    let response = get(spillway.port, "/media/videos/42/index.m3u8");
    assert_eq!(response.status, 302);
    let cookies = response.header_all("set-cookie");
    assert_eq!(cookies.len(), 3, "{cookies:?}");
    let mut values = std::collections::BTreeMap::new();
    for cookie in &cookies {
        let (pair, attributes) = cookie.split_once("; ").expect("attributes");
        assert_eq!(
            attributes,
            "Domain=example.com; Path=/media/videos/42/; Secure; HttpOnly"
        );
        let (name, value) = pair.split_once('=').expect("name=value");
        values.insert(name.to_owned(), value.to_owned());
    }
    // `explain` shows the same three cookies (signed in the same window).
    let explained = support::run_cli(&[
        "explain",
        "--config",
        spillway.config_path().to_str().unwrap(),
        "/media/videos/42/index.m3u8",
    ]);
    let explained = String::from_utf8_lossy(&explained.stdout);
    let shown: Vec<&str> = explained
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie"))
        .map(str::trim)
        .collect();
    assert_eq!(shown.len(), 3, "{explained}");
    assert!(
        shown
            .iter()
            .all(|c| c.starts_with("CloudFront-") && c.ends_with("; Secure; HttpOnly")),
        "{explained}"
    );
    let names: Vec<&str> = values.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "CloudFront-Key-Pair-Id",
            "CloudFront-Policy",
            "CloudFront-Signature"
        ]
    );
    // CloudFront reads the cookies as it reads the same three query parameters: the player's
    // next segment in that directory passes, a file of another directory does not.
    let as_query = |url: &str| {
        format!(
            "{url}?Policy={}&Signature={}&Key-Pair-Id={}",
            values["CloudFront-Policy"],
            values["CloudFront-Signature"],
            values["CloudFront-Key-Pair-Id"]
        )
    };
    // CloudFront's `*` matches `/` too: below the directory is open as well (the README
    // says so, and a route asking the application about each object may not set cookies).
    let segment = as_query("https://cdn.example.com/media/videos/42/segment7.ts");
    let below = as_query("https://cdn.example.com/media/videos/42/720p/segment7.ts");
    let elsewhere = as_query("https://cdn.example.com/media/videos/43/segment7.ts");
    assert_eq!(
        check(&public, &[segment, below, elsewhere], now(), "203.0.113.9"),
        [
            "accept",
            "accept",
            "reject: the policy is for another resource"
        ]
    );
}
