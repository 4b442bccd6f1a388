//! CORS on a route's files and redirects: the fields for the origins it lists (or any), a
//! browser's preflight answered by spillway for the methods the route answers itself, and the
//! application's own preflights left to it.

use crate::support::{self, Response, Stack, StackOptions};

const ROUTES: &str = r#"  - prefix: /shared
    root: www/shared
    bucket: media
    key_prefix: shared/
    access: public
    cors:
      origins: ["https://app.example.com"]
      headers: [range]
      max_age: 10m
  - prefix: /open
    root: www/open
    cors:
      origins: ["*"]
"#;

fn stack() -> Stack {
    Stack::start_with(StackOptions {
        extra_routes: ROUTES,
        extra_roots: &["shared", "open"],
        ..StackOptions::default()
    })
}

const APP: (&str, &str) = ("Origin", "https://app.example.com");

fn varies_by_origin(resp: &Response) -> bool {
    resp.header_all("vary").iter().any(|v| {
        v.split(',')
            .any(|t| t.trim().eq_ignore_ascii_case("origin"))
    })
}

#[test]
fn a_listed_origin_may_read_files_and_redirects_and_no_other_may() {
    let stack = stack();
    stack.put_local("shared", "a.txt", b"0123456789");
    stack.put_local("static", "site.css", b"body{}");
    let port = stack.proxy.port;
    let whole = support::request(port, "GET", "/shared/a.txt", &[APP], b"");
    let etag = whole.header("etag").expect("an ETag").to_owned();
    let range = support::request(
        port,
        "GET",
        "/shared/a.txt",
        &[APP, ("Range", "bytes=0-3")],
        b"",
    );
    let not_modified = support::request(
        port,
        "GET",
        "/shared/a.txt",
        &[APP, ("If-None-Match", etag.as_str())],
        b"",
    );
    let redirect = support::request(port, "GET", "/shared/gone.jpg", &[APP], b"");
    let head = support::request(port, "HEAD", "/shared/a.txt", &[APP], b"");
    for (resp, status) in [
        (&whole, 200),
        (&range, 206),
        (&not_modified, 304),
        (&redirect, 302),
        (&head, 200),
    ] {
        assert_eq!(resp.status, status, "{:?}", resp.headers);
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://app.example.com"),
            "{status}"
        );
        assert!(varies_by_origin(resp), "{status}: {:?}", resp.headers);
        assert_eq!(resp.header("access-control-allow-credentials"), None);
    }
    assert_eq!(range.text(), "0123");
    assert_eq!(
        range.header("access-control-expose-headers"),
        Some("Accept-Ranges, Content-Range, ETag")
    );
    assert_eq!(redirect.header("access-control-expose-headers"), None);

    // Another origin, or none: the answer is the same but grants nothing, and says it varies.
    for origin in [
        &[("Origin", "https://evil.test")][..],
        &[("Origin", "null")],
        &[],
    ] {
        let resp = support::request(port, "GET", "/shared/a.txt", origin, b"");
        assert_eq!((resp.status, resp.text().as_str()), (200, "0123456789"));
        assert_eq!(
            resp.header("access-control-allow-origin"),
            None,
            "{origin:?}"
        );
        assert!(varies_by_origin(&resp), "{origin:?}");
    }
    // A route without `cors:` says nothing of it.
    let plain = support::request(port, "GET", "/static/site.css", &[APP], b"");
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("access-control-allow-origin"), None);
    assert!(!varies_by_origin(&plain));
}

#[test]
fn any_origin_gets_a_star_and_no_vary() {
    let stack = stack();
    stack.put_local("open", "b.txt", b"open");
    let resp = support::request(stack.proxy.port, "GET", "/open/b.txt", &[APP], b"");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert!(!varies_by_origin(&resp));
}

#[test]
fn preflights_for_reads_are_answered_here_and_the_apps_own_go_to_it() {
    let stack = stack();
    let port = stack.proxy.port;
    let preflight = |origin: &str, method: &str| {
        support::request(
            port,
            "OPTIONS",
            "/shared/video.mp4",
            &[
                ("Origin", origin),
                ("Access-Control-Request-Method", method),
                ("Access-Control-Request-Headers", "range"),
            ],
            b"",
        )
    };
    let ours = preflight("https://app.example.com", "GET");
    assert_eq!(ours.status, 204, "{:?}", ours.headers);
    assert_eq!(ours.header("x-legacy-port"), None, "answered by spillway");
    assert_eq!(
        ours.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        ours.header("access-control-allow-methods"),
        Some("GET, HEAD")
    );
    assert_eq!(ours.header("access-control-allow-headers"), Some("range"));
    assert_eq!(ours.header("access-control-max-age"), Some("600"));
    assert!(varies_by_origin(&ours));
    assert!(ours.body.is_empty());

    // From an origin not listed: answered, nothing granted.
    let stranger = preflight("https://evil.test", "GET");
    assert_eq!(stranger.status, 204);
    assert_eq!(stranger.header("access-control-allow-origin"), None);
    assert_eq!(stranger.header("access-control-allow-methods"), None);

    // A preflight for an upload is the application's: it goes upstream, as any OPTIONS does.
    let upload = preflight("https://app.example.com", "PUT");
    assert!(
        upload.header("x-legacy-port").is_some(),
        "{:?}",
        upload.headers
    );
    assert!(
        upload.text().contains("method: OPTIONS"),
        "{}",
        upload.text()
    );
    let plain = support::request(port, "OPTIONS", "/shared/video.mp4", &[APP], b"");
    assert!(
        plain.header("x-legacy-port").is_some(),
        "not a preflight: upstream"
    );
}

#[test]
fn check_prints_a_route_s_cors() {
    let stack = stack();
    let config = stack.proxy.config_path();
    let run = support::run_cli(&["check", "--config", &config.display().to_string()]);
    assert!(run.status.success(), "{run:?}");
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        out.contains(
            "cors origins https://app.example.com; methods GET, HEAD; headers range; max_age 10m"
        ),
        "{out}"
    );
    assert!(
        out.contains("cors origins * (any); methods GET, HEAD; headers none; max_age 10m"),
        "{out}"
    );
}
