//! Loading `proxy.yaml`: the shipped example compiles, and every mistake names its key and line.

use std::path::Path;

use spillway::config::{self, Environment, ParseError};
use spillway::core::policy::Access;
use spillway::s3::sigv4::Keys;

fn no_var(_: &str) -> Option<String> {
    None
}

fn no_chain(_region: &str) -> Result<Keys, String> {
    Err("no credentials in this test".to_owned())
}

/// No environment variables and an AWS provider chain that finds nothing.
const NO_ENV: Environment = Environment {
    var: &no_var,
    chain: &no_chain,
};

/// A temp dir with `www/` in it, for configs whose roots must exist.
fn base() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    dir
}

/// Parses `yaml` and returns the rendered problems (or the syntax error), one per line.
fn errors(yaml: &str, env: &Environment) -> String {
    let dir = base();
    match config::parse(yaml, dir.path(), env) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(ParseError::Syntax(e)) => e.to_string(),
        Err(ParseError::Invalid(problems)) => problems
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

const GOOD: &str = r#"listen: "127.0.0.1:0"
upstreams:
  legacy:
    address: "127.0.0.1:1"
default_upstream: legacy
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "http://127.0.0.1:9000"
    credentials:
      access_key_id: "AK"
      secret_access_key: "SK"
routes:
  - prefix: /uploads
    root: www
    bucket: media
    key_prefix: uploads/
    access: private
    ttl: 5m
    rules:
      - match: "avatars/**"
        access: public
"#;

#[test]
fn the_shipped_proxy_yaml_compiles_to_what_it_documents() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.yaml");
    let config = config::load(&path).unwrap_or_else(|e| panic!("shipped proxy.yaml: {e}"));
    let addresses: Vec<std::net::SocketAddr> = config.listen.iter().map(|l| l.address).collect();
    assert_eq!(addresses, vec!["127.0.0.1:8080".parse().unwrap()]);
    assert!(config.listen[0].tls.is_none());
    assert_eq!(config.threads, 2);
    let upstream = config
        .site
        .default_upstream
        .as_ref()
        .expect("default upstream");
    assert_eq!(
        (
            upstream.name.as_str(),
            upstream.address.to_string().as_str()
        ),
        ("legacy", "127.0.0.1:8081")
    );
    let prefixes: Vec<&str> = config.site.routes.iter().map(|(p, _)| p).collect();
    assert_eq!(prefixes, ["/uploads", "/static", "/media"]);
    let (uploads, rest) = config.site.routes.lookup("/uploads/a.jpg").unwrap();
    assert_eq!(rest, "/a.jpg");
    let bucket = uploads.bucket.as_ref().expect("uploads has a bucket");
    assert_eq!(
        bucket.base_url(),
        "http://127.0.0.1:9000/example-media/",
        "custom endpoint → path style"
    );
    assert!(
        bucket.credentials().current().is_some(),
        "demo keys present"
    );
    assert_eq!(
        uploads.policy.evaluate("avatars/x.png").access,
        Access::Public
    );
    assert!(
        matches!(uploads.policy.evaluate("doc.pdf").access, Access::Private(s) if s.ttl.as_secs() == 300)
    );
    let (statics, _) = config.site.routes.lookup("/static/site.css").unwrap();
    assert!(
        statics.bucket.is_none(),
        "static has no bucket: misses are 404"
    );
    assert!(
        statics.docroot.path().join("site.css").is_file(),
        "bundled example file exists"
    );
    let (media, _) = config.site.routes.lookup("/media/x.jpg").unwrap();
    assert_eq!(media.key_prefix, "media/");
    let offload = media.offload.as_ref().expect("/media opts in to offload");
    assert_eq!(offload.min_age, std::time::Duration::from_secs(600));
    assert_eq!(offload.after, spillway::core::site::After::Delete);
    let (uploads, _) = config.site.routes.lookup("/uploads/hello.txt").unwrap();
    assert!(
        uploads.offload.is_none(),
        "/uploads has no offload: block, so offload never touches it"
    );
}

#[test]
fn a_good_config_compiles() {
    let dir = base();
    let config = config::parse(GOOD, dir.path(), &NO_ENV).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(config.site.routes.len(), 1);
    assert_eq!(
        config.shutdown.grace_period.as_secs(),
        60,
        "default grace period"
    );
}

#[test]
fn listen_takes_a_list() {
    let yaml = GOOD.replace(
        r#"listen: "127.0.0.1:0""#,
        "listen:\n  - \"127.0.0.1:0\"\n  - \"[::1]:0\"",
    );
    let dir = base();
    let config = config::parse(&yaml, dir.path(), &NO_ENV).unwrap();
    assert_eq!(config.listen.len(), 2);
}

#[test]
fn two_listeners_on_one_address_are_refused() {
    let yaml = GOOD.replace(
        r#"listen: "127.0.0.1:0""#,
        "listen:\n  - \"127.0.0.1:8443\"\n  - \"127.0.0.1:8443\"",
    );
    assert_eq!(
        errors(&yaml, &NO_ENV),
        "listen[1]: 127.0.0.1:8443 is already a listener above; give each listener its own port at line 3 column 5"
    );
}

#[test]
fn syntax_errors_name_the_key_and_line() {
    let cases = [
        (
            GOOD.replace("ttl: 5m", "tll: 5m"),
            "routes[0]: unknown field `tll`",
            20,
        ),
        (
            GOOD.replace("ttl: 5m", "ttl: soon"),
            "routes[0].ttl: invalid duration \"soon\"",
            20,
        ),
        (
            GOOD.replace("access: private", "access: secret"),
            "routes[0].access: unknown variant `secret`",
            19,
        ),
        (
            GOOD.replace("region: us-east-1", "region: [1]"),
            "buckets.media.region: invalid type",
            9,
        ),
        (
            GOOD.replace("threads", "x")
                .replace("listen:", "threads: many\nlisten:"),
            "threads: invalid type",
            1,
        ),
    ];
    for (yaml, want, line) in cases {
        let got = errors(&yaml, &NO_ENV);
        assert!(got.contains(want), "want {want:?} in {got:?}");
        assert!(
            got.contains(&format!("at line {line} column")),
            "want line {line} in {got:?}"
        );
    }
}

#[test]
fn semantic_errors_name_the_key_and_line() {
    let cases = [
        (
            GOOD.replace("bucket: media\n    key", "bucket: medai\n    key"),
            "routes[0].bucket: unknown bucket \"medai\" (defined: media)",
            17,
        ),
        (
            GOOD.replace("default_upstream: legacy", "default_upstream: legacy2"),
            "default_upstream: unknown upstream \"legacy2\" (defined: legacy)",
            5,
        ),
        (
            GOOD.replace("root: www", "root: nowhere"),
            "routes[0].root: cannot open",
            16,
        ),
        (
            GOOD.replace("ttl: 5m", "ttl: 8d"),
            "routes[0].ttl: must be between 1s and 7 days",
            20,
        ),
        (
            GOOD.replace("\"avatars/**\"", "\"avatars/[x\""),
            "routes[0].rules[0].match:",
            22,
        ),
        (
            GOOD.replace("prefix: /uploads", "prefix: uploads"),
            "routes[0].prefix: \"uploads\" must start with '/'",
            15,
        ),
        (
            GOOD.replace("prefix: /uploads", "prefix: /up%20loads"),
            "routes[0].prefix:",
            15,
        ),
        (
            GOOD.replace("address: \"127.0.0.1:1\"", "address: \"no-port\""),
            "upstreams.legacy.address: \"no-port\" is not a usable host:port",
            4,
        ),
        (
            GOOD.replace(r#"listen: "127.0.0.1:0""#, r#"listen: "localhost""#),
            "listen: \"localhost\" is not a usable",
            1,
        ),
        (
            GOOD.replace("\"http://127.0.0.1:9000\"", "\"127.0.0.1:9000\""),
            "buckets.media.endpoint: endpoint \"127.0.0.1:9000\" must be an absolute",
            10,
        ),
        (
            GOOD.replace("bucket: media\n    region", "bucket: Media\n    region"),
            "buckets.media.bucket:",
            8,
        ),
        (
            GOOD.replace("key_prefix: uploads/", "key_prefix: /uploads/"),
            "routes[0].key_prefix: must not start with '/'",
            18,
        ),
        (
            format!("threads: 0\n{GOOD}"),
            "threads: must be at least 1",
            1,
        ),
        (
            GOOD.replace(
                "key_prefix: uploads/",
                "key_prefix: uploads/\n    authorize: { upstream: legacy, path: /auth, forward: [X-Original-URI] }",
            ),
            "routes[0].authorize.forward[0]: x-original-uri is set by spillway, never forwarded",
            19,
        ),
        (
            GOOD.replace(
                "key_prefix: uploads/",
                "key_prefix: uploads/\n    authorize: { upstream: legacy, path: auth }",
            ),
            "routes[0].authorize.path: \"auth\" must be a path starting with '/'",
            19,
        ),
        (
            GOOD.replace(
                "key_prefix: uploads/",
                "key_prefix: uploads/\n    authorize: { upstream: legacy, path: /auth, timeout: 90s }",
            ),
            "routes[0].authorize.timeout: must be between 100ms and 60s",
            19,
        ),
        (
            GOOD.replace(
                "key_prefix: uploads/",
                "key_prefix: uploads/\n    authorize: { upstream: legacy, path: /a, forward: [Connection] }",
            ),
            "routes[0].authorize.forward[0]: connection describes the client's connection; it cannot be forwarded",
            19,
        ),
        (
            GOOD.replace(
                "    bucket: media\n    key_prefix: uploads/",
                "    key_prefix: uploads/\n    authorize: { upstream: legacy, path: /auth }",
            ),
            "routes[0].authorize: applies to presigned redirects only, and this route has no bucket: set applies_to: all to check its local files",
            18,
        ),
        (
            GOOD.replace("default_upstream: legacy\n", "")
                .replace("key_prefix: uploads/", "key_prefix: uploads/\n    shadow: true"),
            "routes[0].shadow: needs an upstream to send everything to (the route's upstream or default_upstream)",
            18,
        ),
        (
            format!("open_file_cache:\n  valid: 2m\n{GOOD}"),
            "open_file_cache.valid: must be at most 60s: a deleted or replaced file is served that long",
            2,
        ),
    ];
    for (yaml, want, line) in cases {
        let got = errors(&yaml, &NO_ENV);
        assert!(got.contains(want), "want {want:?} in {got:?}");
        assert!(
            got.contains(&format!("at line {line} column")),
            "want line {line} in {got:?}"
        );
    }
}

#[test]
fn all_problems_are_reported_at_once() {
    let yaml = GOOD
        .replace("root: www", "root: nowhere")
        .replace("default_upstream: legacy", "default_upstream: nope");
    let got = errors(&yaml, &NO_ENV);
    assert!(
        got.contains("routes[0].root") && got.contains("default_upstream"),
        "{got}"
    );
}

#[test]
fn a_duplicate_prefix_is_refused() {
    let yaml = format!("{GOOD}  - prefix: /uploads/\n    root: www\n");
    let got = errors(&yaml, &NO_ENV);
    assert!(
        got.contains(
            "routes[1].prefix: \"/uploads/\" duplicates another route's prefix at line 24"
        ),
        "{got}"
    );
}

const NO_CREDENTIALS: &str = r#"listen: "127.0.0.1:0"
buckets:
  media:
    bucket: media
    region: us-east-1
routes:
  - prefix: /files
    root: www
    bucket: media
    rules:
      - match: "*.pdf"
        access: private
"#;

#[test]
fn private_objects_need_credentials() {
    // Private by default: no `access:` means private, which needs credentials.
    let got = errors(NO_CREDENTIALS, &NO_ENV);
    assert!(
        got.contains("routes[0]: private objects need credentials to presign, but bucket \"media\" has no `credentials:` and the AWS provider chain"),
        "{got}"
    );
    let public = NO_CREDENTIALS.replace(
        "    bucket: media\n    rules",
        "    bucket: media\n    access: public\n    rules",
    );
    let got = errors(&public, &NO_ENV);
    assert!(
        got.contains("routes[0].rules[0].access: private objects need credentials"),
        "{got}"
    );
    assert!(got.contains("at line 13 column"), "{got}");
}

#[test]
fn buckets_without_credentials_use_the_provider_chain_once() {
    let calls = std::cell::Cell::new(0);
    let chain = |_region: &str| {
        calls.set(calls.get() + 1);
        Ok(Keys::new(
            "AKIDCHAIN",
            "secret",
            Some("token".into()),
            None,
            "test chain",
        ))
    };
    let env = Environment {
        var: &no_var,
        chain: &chain,
    };
    let dir = base();
    let yaml = format!("{NO_CREDENTIALS}  - prefix: /more\n    root: www\n    bucket: media\n");
    let config = config::parse(&yaml, dir.path(), &env).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(calls.get(), 1, "fetched once for two private routes");
    let (route, _) = config.site.routes.lookup("/files/a.pdf").unwrap();
    let keys = route
        .bucket
        .as_ref()
        .unwrap()
        .credentials()
        .current()
        .unwrap();
    assert_eq!(keys.access_key_id, "AKIDCHAIN");
    let chain = config
        .chain_credentials
        .expect("the refresher will keep them fresh");
    assert_eq!(chain.longest_ttl.as_secs(), 300);

    // Public-only routes never ask the chain (on a laptop it would probe instance metadata).
    let public = NO_CREDENTIALS
        .replace(
            "    bucket: media\n    rules",
            "    bucket: media\n    access: public\n    rules",
        )
        .replace("access: private", "access: public");
    calls.set(0);
    let config = config::parse(&public, dir.path(), &env).unwrap();
    assert_eq!(calls.get(), 0);
    assert!(config.chain_credentials.is_none());
}

#[test]
fn explicit_credentials_expand_environment_variables() {
    let var = |name: &str| (name == "MEDIA_SECRET").then(|| "from-env".to_owned());
    let env = Environment {
        var: &var,
        chain: &no_chain,
    };
    let dir = base();
    let yaml = GOOD.replace(
        "secret_access_key: \"SK\"",
        "secret_access_key: \"${MEDIA_SECRET}\"",
    );
    config::parse(&yaml, dir.path(), &env).unwrap_or_else(|e| panic!("{e:?}"));
    let yaml = GOOD.replace(
        "secret_access_key: \"SK\"",
        "secret_access_key: \"${NOPE}\"",
    );
    let got = errors(&yaml, &env);
    assert!(
        got.contains("buckets.media.credentials.secret_access_key: environment variable NOPE is not set at line 13"),
        "{got}"
    );
}

#[test]
fn secrets_never_appear_in_debug_output() {
    let dir = base();
    let config = config::parse(GOOD, dir.path(), &NO_ENV).unwrap();
    let debug = format!("{config:?}");
    assert!(debug.contains("AK"), "the key id may show");
    assert!(!debug.contains("\"SK\""), "the secret must not: {debug}");
    assert!(
        !config::describe(&config).contains("SK"),
        "nor in `check` output"
    );
}

/// `GOOD` with an `offload:` block (indented for the /uploads route) appended.
fn with_offload(block: &str) -> String {
    format!("{GOOD}    offload:\n{block}")
}

#[test]
fn offload_blocks_compile_to_their_settings() {
    use spillway::core::site::After;
    let dir = base();
    std::fs::create_dir(dir.path().join("archive")).unwrap();
    let yaml = with_offload(
        "      min_age: 1h\n      after: archive\n      archive: archive\n      concurrency: 3\n      multipart_threshold: 100MiB\n",
    );
    let config = config::parse(&yaml, dir.path(), &NO_ENV).unwrap_or_else(|e| panic!("{e:?}"));
    let (_, route) = config.site.routes.iter().next().unwrap();
    let offload = route.offload.as_ref().expect("an offload: block");
    assert_eq!(offload.min_age, std::time::Duration::from_secs(3600));
    assert_eq!(offload.after, After::Archive(dir.path().join("archive")));
    assert_eq!(
        (offload.concurrency, offload.multipart_threshold),
        (3, 100 << 20)
    );
    // An empty block opts in with the documented defaults.
    let empty = config::parse(&with_offload("      {}\n"), dir.path(), &NO_ENV).unwrap();
    let (_, route) = empty.site.routes.iter().next().unwrap();
    let offload = route.offload.as_ref().expect("offload: {} opts in");
    assert_eq!(offload.min_age, std::time::Duration::from_secs(600));
    assert_eq!(offload.after, After::Delete);
    assert_eq!(
        (offload.concurrency, offload.multipart_threshold),
        (8, 64 << 20)
    );
    // Without a block: not offloaded at all.
    let plain = config::parse(GOOD, dir.path(), &NO_ENV).unwrap();
    let (_, route) = plain.site.routes.iter().next().unwrap();
    assert!(route.offload.is_none());
}

#[test]
fn offload_mistakes_name_the_key_and_line() {
    let cases = [
        (
            "      after: archive\n",
            "routes[0].offload.after: archive needs `archive:`, a directory to move files into at line 25 column 14",
        ),
        (
            "      archive: somewhere\n",
            "routes[0].offload.archive: is only used with `after: archive` at line 25 column 16",
        ),
        (
            "      after: archive\n      archive: missing\n",
            "routes[0].offload.archive: cannot use ",
        ),
        (
            "      concurrency: 0\n",
            "routes[0].offload.concurrency: must be between 1 and 256 at line 25 column 20",
        ),
        (
            "      multipart_threshold: 1MiB\n",
            "routes[0].offload.multipart_threshold: must be between 5MiB (S3's smallest part) and 5GiB (S3's largest single upload) at line 25 column 28",
        ),
        (
            "      multipart_threshold: 64\n",
            "invalid size \"64\" (write e.g. 64MiB, 500MB or 1GiB)",
        ),
        ("      after: shred\n", "unknown variant `shred`"),
    ];
    for (block, want) in cases {
        let got = errors(&with_offload(block), &NO_ENV);
        assert!(got.contains(want), "{block}\n{got}");
    }
    let no_bucket = GOOD.replace("    bucket: media\n    key_prefix", "    key_prefix")
        + "    offload:\n      min_age: 1m\n";
    let got = errors(&no_bucket, &NO_ENV);
    assert!(
        got.contains("routes[0].offload: needs a bucket on the route: offload moves files to it"),
        "{got}"
    );
}

use crate::support;

#[test]
fn tls_certificates_are_read_and_checked_at_load() {
    let dir = base();
    let (_, main) = support::certificate(dir.path(), "main", &["localhost"]);
    let (_, other) = support::certificate(dir.path(), "other", &["other.test"]);
    let yaml = |cert: &std::path::Path, key: &std::path::Path| {
        format!(
            "listen:\n  - \"127.0.0.1:0\"\n  - address: \"127.0.0.1:0\"\n    tls:\n      cert: {}\n      key: {}\nroutes:\n  - prefix: /a\n    root: www\n",
            cert.display(),
            key.display()
        )
    };
    let good = config::parse(&yaml(&main.cert, &main.key), dir.path(), &NO_ENV)
        .unwrap_or_else(|e| panic!("{e:?}"));
    assert!(good.listen[1].tls.is_some() && good.listen[0].tls.is_none());

    let missing = dir.path().join("nope.pem");
    assert_eq!(
        errors(&yaml(&missing, &main.key), &NO_ENV),
        format!(
            "listen[1].tls.cert: cannot read certificates from {}: No such file or directory (os error 2) at line 5 column 13",
            missing.display()
        )
    );
    let got = errors(&yaml(&main.cert, &other.key), &NO_ENV);
    assert!(
        got.starts_with(&format!(
            "listen[1].tls.key: the key in {} cannot be used with the certificate in {}:",
            other.key.display(),
            main.cert.display()
        )) && got.ends_with("at line 6 column 12"),
        "{got}"
    );
    let got = errors(&yaml(&main.key, &main.key), &NO_ENV);
    assert!(got.contains("holds no certificate"), "{got}");
}

#[test]
fn a_window_s_link_is_never_given_out_after_the_credentials_ended_it() {
    use spillway::core::answer::{Answer, Reject};
    use spillway::core::decide::{decide, Decision, Request};
    use spillway::fs::docroot::MayBlock;
    use spillway::s3::SignError;
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    // A 10-minute window from `start`; the chain's keys expire 5 minutes (plus the margin
    // kept before an expiry) into it, so the window's link ends then too.
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let expiry = start + Duration::from_secs(5 * 60 + 60);
    let chain = |_region: &str| {
        Ok(Keys::new(
            "AKIDCHAIN",
            "secret",
            Some("token".into()),
            Some(expiry),
            "test chain",
        ))
    };
    let env = Environment {
        var: &no_var,
        chain: &chain,
    };
    let dir = base();
    let yaml = NO_CREDENTIALS.replace(
        "    bucket: media\n    rules",
        "    bucket: media\n    ttl: 1h\n    sign_window: 10m\n    rules",
    );
    let config = config::parse(&yaml, dir.path(), &env).unwrap_or_else(|e| panic!("{e:?}"));
    let headers = http::HeaderMap::new();
    let request = Request {
        method: &http::Method::GET,
        path: "/files/report.pdf",
        query: None,
        headers: &headers,
    };
    let at = |now: SystemTime| match decide(&config.site, &request, now, &MayBlock) {
        Ok(decided) => decided.decision,
        Err(never) => match never {},
    };
    // Early in the window: the window's link, good until the keys' margin.
    let early = start + Duration::from_secs(60);
    match at(early) {
        Decision::Answer(Answer::Redirect(r)) => {
            assert!(r.location.contains("X-Amz-Expires=300"), "{}", r.location)
        }
        other => panic!("a link early in the window: {other:?}"),
    }
    // Late in it the window's link has ended: never handed out; these keys cannot make a
    // useful one any more, so the answer says so (and asks for fresh keys).
    match at(start + Duration::from_secs(9 * 60)) {
        Decision::Answer(Answer::Reject(Reject::Sign(SignError::CredentialsExpiring))) => {}
        other => panic!("the ended link was given out: {other:?}"),
    }
}

#[test]
fn cors_origins_and_methods_are_checked_where_they_are_written() {
    let with = |block: &str| format!("{GOOD}    cors:\n{block}");
    for (block, said) in [
        (
            "      origins: []\n",
            "routes[0].cors.origins: needs at least one origin, or \"*\" for any at line 25 column 16",
        ),
        (
            "      origins: [\"*\", \"https://a.test\"]\n",
            "routes[0].cors.origins: \"*\" already allows every origin: list origins or \"*\", not both at line 25 column 16",
        ),
        (
            "      origins: [\"https://a.test/\"]\n",
            "routes[0].cors.origins[0]: \"https://a.test/\" is not an origin: scheme and host (and port) only, no path or trailing slash at line 25 column 17",
        ),
        (
            "      origins: [\"a.test\"]\n",
            "routes[0].cors.origins[0]: \"a.test\" is not an origin: it starts with https:// or http:// at line 25 column 17",
        ),
        (
            "      origins: [\"https://App.test\"]\n",
            "routes[0].cors.origins[0]: \"https://App.test\" has capitals: browsers send the host in lowercase at line 25 column 17",
        ),
        (
            "      origins: [\"https://*.a.test\"]\n",
            "routes[0].cors.origins[0]: \"https://*.a.test\" has a wildcard: list each origin, or use \"*\" alone for any at line 25 column 17",
        ),
        (
            "      origins: [\"https://a.test:443\"]\n",
            "routes[0].cors.origins[0]: \"https://a.test:443\" names the default port: browsers leave it out of Origin at line 25 column 17",
        ),
        (
            "      origins: [\"https://a.test\"]\n      methods: [GET, POST]\n",
            "routes[0].cors.methods[1]: \"POST\": only GET and HEAD, which the route answers itself; the upstream application answers the preflights for its own methods at line 26 column 22",
        ),
        (
            "      origins: [\"https://a.test\"]\n      headers: [\"x y\"]\n",
            "routes[0].cors.headers[0]: \"x y\" is not a header field name at line 26 column 17",
        ),
        (
            "      origins: [\"https://a.test\"]\n      credentials: true\n",
            "routes[0].cors: unknown field `credentials`, expected one of `origins`, `methods`, `headers`, `max_age` at line 26 column 7",
        ),
    ] {
        let got = errors(&with(block), &NO_ENV);
        assert_eq!(got, said, "{block}");
    }
    let dir = base();
    let fine = with("      origins: [\"https://a.test:8443\", \"http://localhost:3000\"]\n");
    let config = config::parse(&fine, dir.path(), &NO_ENV).unwrap_or_else(|e| panic!("{e:?}"));
    let (route, _) = config.site.routes.lookup("/uploads/a").unwrap();
    let cors = route.cors.as_ref().expect("cors");
    assert_eq!(cors.methods, [http::Method::GET, http::Method::HEAD]);
    assert_eq!(cors.max_age.as_secs(), 600);
}
