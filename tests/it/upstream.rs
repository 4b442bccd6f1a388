//! Paths outside the routes, and non-GET methods under them, go to the legacy upstream.

use crate::support;

use std::time::{Duration, Instant};

use support::{get, request, wait_until, Conn, Spillway, Stack, StackOptions};

#[test]
fn requests_outside_the_routes_are_proxied_faithfully() {
    let stack = Stack::start();
    let resp = request(
        stack.port(),
        "GET",
        "/forum/view.php?id=7&sort=a%20b",
        &[
            ("Host", "legacy.example"),
            ("X-Forwarded-For", "203.0.113.9"),
            ("Cookie", "sid=1"),
        ],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("x-legacy"),
        Some("1"),
        "answered by the upstream"
    );
    let echo = resp.text();
    for line in [
        "method: GET",
        "uri: /forum/view.php?id=7&sort=a%20b",
        "header: host: legacy.example",
        "header: cookie: sid=1",
        "header: x-forwarded-for: 203.0.113.9, 127.0.0.1",
        "header: x-forwarded-proto: http",
    ] {
        assert!(echo.lines().any(|l| l == line), "{line:?} in\n{echo}");
    }
}

#[test]
fn prefix_look_alikes_go_upstream_not_to_the_route() {
    let stack = Stack::start();
    for path in [
        "/uploadsX/a.png",
        "/uploads../a.png",
        "/Uploads/a.png",
        "/upl%6fads/a.png",
    ] {
        let resp = get(stack.port(), path);
        assert_eq!(
            resp.header("x-legacy"),
            Some("1"),
            "{path} must not match /uploads"
        );
        assert!(
            resp.text().contains(&format!("uri: {path}")),
            "{path} passed through as is"
        );
    }
}

#[test]
fn other_methods_under_a_route_go_upstream_with_their_body() {
    let stack = Stack::start();
    stack.put_local("uploads", "a.txt", b"local");
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let resp = request(
            stack.port(),
            method,
            "/uploads/a.txt",
            &[("Content-Type", "text/plain")],
            b"new content",
        );
        assert_eq!(resp.status, 200, "{method}");
        let echo = resp.text();
        assert!(echo.contains(&format!("method: {method}")), "{echo}");
        assert!(
            echo.contains("body: new content"),
            "{method} body passed: {echo}"
        );
    }
}

#[test]
fn a_route_with_its_own_upstream_sends_its_uploads_there() {
    let legacy = support::Legacy::start();
    let uploads_app = support::Legacy::start();
    let proxy = Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{}\"\n  uploads-app:\n    address: \"127.0.0.1:{}\"\ndefault_upstream: legacy\nroutes:\n  - prefix: /uploads\n    root: .\n    upstream: uploads-app\n",
            legacy.port, uploads_app.port
        )
    });
    let answered_by = |method: &str, path: &str| {
        let resp = request(proxy.port, method, path, &[], b"x=1");
        assert_eq!(resp.status, 200, "{method} {path}: {}", resp.text());
        resp.header("x-legacy-port").map(str::to_owned)
    };
    let uploads_app = Some(uploads_app.port.to_string());
    let legacy = Some(legacy.port.to_string());
    for method in ["POST", "PUT", "DELETE"] {
        assert_eq!(
            answered_by(method, "/uploads/new.jpg"),
            uploads_app,
            "{method}"
        );
    }
    assert_eq!(
        answered_by("POST", "/forum/post"),
        legacy,
        "outside the route"
    );
    assert_eq!(answered_by("GET", "/forum/"), legacy);
    let mut conn = Conn::open(proxy.port);
    let resp = conn.send("GET", "/uploads/missing.jpg", &[], b"");
    assert_eq!(
        resp.status, 404,
        "GET under the route stays local (no bucket)"
    );
    assert_eq!(resp.header("x-legacy-port"), None);
}

#[test]
fn without_an_upstream_other_methods_get_405_and_unrouted_paths_404() {
    let stack = Stack::start_with(StackOptions {
        upstream: false,
        ..StackOptions::default()
    });
    let mut conn = Conn::open(stack.port());
    let resp = conn.send("POST", "/uploads/a.txt", &[], b"x=1");
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD"));
    let resp = conn.send("GET", "/elsewhere", &[], b"");
    assert_eq!(resp.status, 404, "no route and no default upstream");
    let resp = conn.send("GET", "/uploads/avatars/x.png", &[], b"");
    assert_eq!(resp.status, 302, "connection still usable after errors");
}

#[test]
fn a_down_upstream_is_a_quick_502_with_a_log_line_naming_it() {
    // Bind and drop to get a port nobody listens on.
    let dead = support::free_port();
    let proxy = Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{dead}\"\ndefault_upstream: legacy\n"
        )
    });
    let started = Instant::now();
    let resp = get(proxy.port, "/anything");
    assert_eq!(resp.status, 502);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused connect must not be retried for long"
    );
    let logs = proxy.wait_for_log("cannot connect to upstream");
    let line = logs
        .lines()
        .find(|l| l.contains("cannot connect to upstream"))
        .unwrap();
    assert!(
        line.contains("legacy") && line.contains(&format!("127.0.0.1:{dead}")),
        "{line}"
    );
}

#[test]
fn a_refused_upstream_gets_the_same_502_on_both_upstream_paths() {
    let dead = support::free_port();
    let proxy = Spillway::start_custom(&[], |port, _| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\naccess_log:\n  format: json\n  path: access.log\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{dead}\"\ndefault_upstream: legacy\n"
        )
    });
    // A bodyless GET takes the short way; a POST with a body, Pingora's proxy.
    let short = support::request(proxy.port, "GET", "/page", &[], b"");
    let proxied = support::request(
        proxy.port,
        "POST",
        "/form",
        &[("Content-Type", "text/plain")],
        b"field=1",
    );
    for (path, resp) in [("GET /page", &short), ("POST /form", &proxied)] {
        assert_eq!(resp.status, 502, "{path}");
        assert_eq!(resp.text(), "502 Bad Gateway\n", "{path}");
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; charset=utf-8"),
            "{path}"
        );
        assert_eq!(resp.header("server"), None, "{path}: no Server: Pingora");
    }
    let named = |resp: &support::Response| {
        let mut names: Vec<String> = resp
            .headers
            .iter()
            .map(|(n, _)| n.to_ascii_lowercase())
            .filter(|n| n != "connection")
            .collect();
        names.sort();
        names
    };
    assert_eq!(named(&short), named(&proxied));
    // The same log fields: an upstream answer, nothing cut short.
    let access = proxy.spillway_dir().join("access.log");
    wait_until("both requests logged", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.lines().count() >= 2)
    });
    let text = std::fs::read_to_string(&access).unwrap();
    for line in text.lines() {
        let entry: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(entry["status"], 502, "{line}");
        assert_eq!(entry["outcome"], "upstream", "{line}");
        assert_eq!(entry.get("cut_short"), None, "{line}");
    }
    // And the same one-line warning, in an operator's words.
    let logs = proxy.wait_for_log("cannot connect to upstream");
    let warnings: Vec<&str> = logs
        .lines()
        .filter_map(|l| {
            l.split_once("cannot connect to upstream: ")
                .map(|(_, why)| why)
        })
        .collect();
    assert_eq!(warnings.len(), 2, "{logs}");
    assert_eq!(warnings[0], warnings[1], "{logs}");
    assert!(!warnings[0].contains("context:"), "{logs}");
}
