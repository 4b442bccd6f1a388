//! Limits that protect the legacy application: bodies over `max_body` are refused before they
//! are read, requests over `max_inflight` at once, on both ways to the upstream.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use crate::support::{self, Spillway};

/// An upstream that reads each request head, says so on `arrived`, and answers only when told
/// on the returned sender (one answer per message).
fn held_upstream() -> (u16, mpsc::Receiver<String>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let released = std::sync::Arc::new(std::sync::Mutex::new(released));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (arrived_tx, released) = (arrived_tx.clone(), released.clone());
            std::thread::spawn(move || serve_held(stream, &arrived_tx, &released));
        }
    });
    (port, arrived, release)
}

fn serve_held(
    stream: TcpStream,
    arrived: &mpsc::Sender<String>,
    released: &std::sync::Mutex<mpsc::Receiver<()>>,
) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while let Some(head) = support::read_request_head(&mut reader) {
        let length: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse().unwrap_or(0))
            })
            .unwrap_or(0);
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let line = head.lines().next().unwrap_or("").to_owned();
        if arrived.send(line).is_err() {
            return;
        }
        if released.lock().expect("release").recv().is_err() {
            return;
        }
        if writer
            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndone")
            .is_err()
        {
            return;
        }
    }
}

fn behind(upstream: u16, limits: &str) -> Spillway {
    Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\n{limits}upstreams:\n  legacy:\n    address: \"127.0.0.1:{upstream}\"\ndefault_upstream: legacy\n"
        )
    })
}

#[test]
fn requests_over_max_inflight_get_a_quick_503_on_both_ways_upstream() {
    let (upstream, arrived, release) = held_upstream();
    let admin = support::free_port();
    let proxy = behind(
        upstream,
        &format!("admin: \"127.0.0.1:{admin}\"\nlimits:\n  max_inflight: 1\n"),
    );
    let port = proxy.port;
    // The first request takes the one place and waits for the upstream.
    let first = std::thread::spawn(move || support::get(port, "/slow"));
    assert_eq!(
        arrived.recv().expect("the first arrived"),
        "GET /slow HTTP/1.1"
    );
    // Meanwhile a GET (the short way) and a POST (Pingora's proxy) are refused at once.
    let get = support::get(port, "/other");
    let post = support::request(port, "POST", "/form", &[], b"a=1");
    for resp in [&get, &post] {
        assert_eq!(resp.status, 503, "{:?}", resp.headers);
        assert_eq!(resp.header("retry-after"), Some("1"));
        assert_eq!(resp.text(), "503 Service Unavailable\n");
    }
    release.send(()).expect("release");
    assert_eq!(first.join().expect("first").text(), "done");
    // The place is free again.
    let again = std::thread::spawn(move || support::get(port, "/again"));
    assert_eq!(
        arrived.recv().expect("again arrived"),
        "GET /again HTTP/1.1"
    );
    release.send(()).expect("release");
    assert_eq!(again.join().expect("again").status, 200);
    let logs = proxy.wait_for_log("path=\"/form\"");
    for path in ["/other", "/form"] {
        let said = format!("path=\"{path}\"");
        let line = logs.lines().find(|l| l.contains(&said)).unwrap_or_default();
        assert!(
            line.contains("outcome=\"rejected\" status=503")
                && line.contains("reason=\"max_inflight\""),
            "{path}: {logs}"
        );
    }
    assert!(
        arrived.try_recv().is_err(),
        "nothing refused reached the upstream"
    );
    let metrics = support::get(admin, "/metrics").text();
    assert!(
        metrics.contains("spillway_limited_total{reason=\"max_inflight\",route=\"-\"} 2"),
        "{metrics}"
    );
}

#[test]
fn bodies_over_max_body_are_refused_before_they_are_read() {
    let (upstream, arrived, release) = held_upstream();
    let proxy = Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{upstream}\"\ndefault_upstream: legacy\nroutes:\n  - prefix: /upload\n    root: .\n    upstream: legacy\n    limits:\n      max_body: 10B\n"
        )
    });
    let port = proxy.port;
    // A declared length over the limit, with Expect: the 413 comes instead of 100 Continue.
    let mut stream = support::connect(port).expect("connect");
    stream
        .write_all(b"POST /upload/a HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut answer = String::new();
    BufReader::new(stream)
        .read_to_string(&mut answer)
        .expect("read");
    assert!(
        answer.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{answer}"
    );
    assert!(!answer.contains("100 Continue"), "{answer}");
    // Within the limit, and outside the route (no limit there): sent on.
    for target in ["/upload/c", "/elsewhere"] {
        let body = if target == "/upload/c" {
            &b"0123456789"[..]
        } else {
            &[b'x'; 100][..]
        };
        let sent = std::thread::spawn(move || support::request(port, "POST", target, &[], body));
        assert_eq!(
            arrived.recv().expect("arrived"),
            format!("POST {target} HTTP/1.1")
        );
        release.send(()).expect("release");
        assert_eq!(sent.join().expect("sent").status, 200, "{target}");
    }
    assert!(
        arrived.try_recv().is_err(),
        "no refused body reached the upstream"
    );
    // A chunked body that grows past it is cut off there (its head may have gone upstream
    // already: the length was not known).
    let chunked = support::request(
        port,
        "POST",
        "/upload/b",
        &[("Transfer-Encoding", "chunked")],
        b"6\r\n123456\r\n6\r\n789012\r\n0\r\n\r\n",
    );
    assert_eq!(chunked.status, 413, "{:?}", chunked.text());
    let logs = proxy.wait_for_log("path=\"/upload/b\"");
    for path in ["/upload/a", "/upload/b"] {
        let said = format!("path=\"{path}\"");
        let line = logs.lines().find(|l| l.contains(&said)).unwrap_or_default();
        assert!(
            line.contains("status=413") && line.contains("reason=\"max_body\""),
            "{path}: {logs}"
        );
    }
}

#[test]
fn check_prints_the_limits_and_bad_ones_are_refused_where_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("limits.yaml");
    let check = |limits: &str| {
        support::check_config(
            &config,
            &format!("listen: \"127.0.0.1:0\"\nlimits:\n  max_inflight: 200\nupstreams:\n  legacy:\n    address: \"127.0.0.1:1\"\ndefault_upstream: legacy\nroutes:\n  - prefix: /upload\n    root: .\n    limits:\n{limits}"),
        )
    };
    let out = check("      max_body: 10MiB\n      max_inflight: 20\n");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains("upstream limits max_inflight 200\n"),
        "{said}"
    );
    assert!(
        said.contains("  upstream limits max_body 10485760 bytes, max_inflight 20\n"),
        "{said}"
    );
    for (limits, error) in [
        (
            "      max_inflight: 0\n",
            "routes[0].limits.max_inflight: must be at least 1 (leave it out for no limit) at line 12 column 21",
        ),
        (
            "      max_body: ten\n",
            "routes[0].limits.max_body: invalid size \"ten\" (write e.g. 64MiB, 500MB or 1GiB) at line 12 column 17",
        ),
    ] {
        let out = check(limits);
        let whole = format!("spillway: {}: {error}\n", config.display());
        assert_eq!(
            (out.status.success(), String::from_utf8_lossy(&out.stderr)),
            (false, whole.into()),
            "{limits}"
        );
    }
}

#[test]
fn each_client_gets_its_rate_and_behind_trusted_proxies_the_forwarded_one_counts() {
    let legacy = support::Legacy::start();
    let start = |trusted: &str| {
        let legacy_port = legacy.port;
        let trusted = trusted.to_owned();
        Spillway::start_with(move |port| {
            format!(
                "listen: \"127.0.0.1:{port}\"\nthreads: 1\n{trusted}limits:\n  rate: {{requests: 1, per: 1m, burst: 2}}\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{legacy_port}\"\ndefault_upstream: legacy\n"
            )
        })
    };
    let get = |port: u16, xff: &str| {
        let headers: Vec<(&str, &str)> = match xff {
            "" => vec![],
            xff => vec![("X-Forwarded-For", xff)],
        };
        support::request(port, "GET", "/page", &headers, b"")
    };

    // No trusted proxies: the field is the client's to forge, so it is ignored.
    let direct = start("");
    let statuses: Vec<u16> = ["198.51.100.1", "198.51.100.2", "198.51.100.3"]
        .iter()
        .map(|xff| get(direct.port, xff).status)
        .collect();
    assert_eq!(statuses, [200, 200, 429], "one client, whatever it says");
    let refused = get(direct.port, "");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("retry-after"), Some("60"));
    assert_eq!(refused.text(), "429 Too Many Requests\n");
    // Pingora's way (a body) is held to the same budget.
    let post = support::request(direct.port, "POST", "/form", &[], b"a=1");
    assert_eq!(post.status, 429);

    // Behind a trusted proxy (here: the test client's address), each forwarded client counts.
    let behind = start("trusted_proxies: [\"127.0.0.1/32\"]\n");
    for client in ["198.51.100.1", "198.51.100.2"] {
        let statuses: Vec<u16> = (0..3).map(|_| get(behind.port, client).status).collect();
        assert_eq!(statuses, [200, 200, 429], "{client}");
    }
    // The log names the client the budget was counted for, not the proxy.
    let refusals = |logs: &str| logs.lines().filter(|l| l.contains("status=429")).count();
    support::wait_until("both refusals logged", || refusals(&behind.logs()) == 2);
    let logs = behind.logs();
    let refused: Vec<&str> = logs.lines().filter(|l| l.contains("status=429")).collect();
    assert_eq!(refused.len(), 2, "{logs}");
    for (line, client) in refused.iter().zip(["198.51.100.1", "198.51.100.2"]) {
        assert!(
            line.contains("reason=\"rate\"") && line.contains(&format!("client={client}")),
            "{line}"
        );
    }
}

#[test]
fn check_prints_the_rate_and_trusted_proxies_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("rate.yaml");
    let check = |top: &str, rate: &str| {
        support::check_config(
            &config,
            &format!("listen: \"127.0.0.1:0\"\n{top}upstreams:\n  legacy:\n    address: \"127.0.0.1:1\"\ndefault_upstream: legacy\nroutes:\n  - prefix: /api\n    root: .\n    limits:\n      rate: {rate}\n"),
        )
    };
    let out = check(
        "trusted_proxies: [\"10.0.0.0/8\", \"192.0.2.7\"]\n",
        "{requests: 20, per: 1s, burst: 40}",
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        said.contains("  upstream limits rate 20 per 1s, burst 40, by client ip\n"),
        "{said}"
    );
    assert!(
        said.contains(
            "trusted proxies 10.0.0.0/8, 192.0.2.7/32 (X-Forwarded-For believed from these)"
        ),
        "{said}"
    );
    for (top, rate, error) in [
        (
            "",
            "{requests: 0, per: 1s}",
            "routes[0].limits.rate.requests: must be at least 1 at line 10 column 24",
        ),
        (
            "",
            "{requests: 5, per: 0s}",
            "routes[0].limits.rate.per: must be between 1ms and 24h at line 10 column 32",
        ),
        (
            "",
            "{requests: 5, per: 1s, burst: 0}",
            "routes[0].limits.rate.burst: must be at least 1 (the requests allowed at once) at line 10 column 43",
        ),
        (
            "",
            "{requests: 5, per: 1s, key: cookie}",
            "routes[0].limits.rate.key: unknown variant `cookie`, expected `client_ip` at line 10 column 41",
        ),
        (
            "",
            "{requests: 5}",
            "routes[0].limits.rate: missing field `per` at line 10 column 13",
        ),
        (
            "trusted_proxies: [\"10.0.0.0/33\"]\n",
            "{requests: 5, per: 1s}",
            "trusted_proxies[0]: \"10.0.0.0/33\" is not an address or a network like 10.0.0.0/8 at line 2 column 19",
        ),
    ] {
        let out = check(top, rate);
        let whole = format!("spillway: {}: {error}\n", config.display());
        assert_eq!(
            (out.status.success(), String::from_utf8_lossy(&out.stderr)),
            (false, whole.into()),
            "{rate}"
        );
    }
}
