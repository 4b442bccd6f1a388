//! Tests of the test fixtures themselves (tests/support), so a broken
//! fixture shows up here rather than as a confusing spillway failure.

use crate::support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

use support::*;

#[test]
fn legacy_echoes_post_with_raw_target() {
    let legacy = Legacy::start();
    // Dot segments, an encoded slash, a double slash and '+': all must reach
    // the server untouched, which is what the raw client exists for.
    let target = "/a/./b/../%2e%2E/x//y%2Fz?q=a+b%20c&empty=";
    let resp = request(
        legacy.port,
        "POST",
        target,
        &[("X-Test", "hi there")],
        b"hello\nworld",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("X-LEGACY"), Some("1"));
    let text = resp.text();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "method: POST");
    assert_eq!(lines[1], format!("uri: {target}"));
    assert!(
        lines.contains(&format!("header: host: 127.0.0.1:{}", legacy.port).as_str()),
        "{text}"
    );
    assert!(lines.contains(&"header: x-test: hi there"), "{text}");
    assert!(lines.contains(&"header: connection: close"), "{text}");
    assert!(lines.contains(&"header: content-length: 11"), "{text}");
    assert!(
        text.ends_with("body-len: 11\nbody: hello\nworld\n"),
        "{text}"
    );
}

#[test]
fn keep_alive_conn_reads_exactly_one_response_each() {
    let legacy = Legacy::start();
    let mut conn = Conn::open(legacy.port);
    let first = conn.send("GET", "/one", &[], b"");
    // HEAD: Content-Length is present but no body follows; reading one must
    // not swallow or wait for bytes.
    let head = conn.send("HEAD", "/two", &[("Host", "example.test")], b"");
    let third = conn.send("PUT", "/three", &[], b"xyz");
    assert!(first.text().contains("uri: /one\n"), "{}", first.text());
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert!(head.header("content-length").is_some());
    assert!(third.text().contains("uri: /three\n"), "{}", third.text());
    assert!(third.text().contains("body: xyz\n"), "{}", third.text());
    assert!(
        !third.text().contains("connection: close"),
        "{}",
        third.text()
    );
}

/// A one-connection server that reads the request head and writes `reply`
/// verbatim, then (if `hold_open`) keeps the socket open until the client
/// goes away, so a client that waits for EOF would hang.
fn canned_server(reply: &'static [u8], hold_open: bool) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
            line.clear();
        }
        let mut stream = reader.into_inner();
        stream.write_all(reply).unwrap();
        if hold_open {
            let _ = std::io::Read::read(&mut stream, &mut [0u8; 1]);
        }
    });
    port
}

#[test]
fn raw_client_decodes_chunked_with_extensions_and_trailers() {
    let port = canned_server(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n\
          5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nTrailer: t\r\n\r\n",
        true,
    );
    let resp = get(port, "/");
    assert_eq!(resp.body, b"hello, world");
    assert_eq!(resp.header_all("x-A"), vec!["1", "2"]);
}

#[test]
fn raw_client_does_not_wait_for_204_or_304_bodies() {
    for reply in [
        &b"HTTP/1.1 204 No Content\r\n\r\n"[..],
        &b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n"[..],
        &b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nX-Final: y\r\n\r\n"[..],
    ] {
        let port = canned_server(reply, true);
        let resp = get(port, "/");
        assert!(resp.status == 204 || resp.status == 304, "{resp:?}");
        assert!(resp.body.is_empty());
    }
}

#[test]
fn raw_client_reads_unframed_body_to_eof() {
    let port = canned_server(b"HTTP/1.1 200 OK\r\n\r\nuntil close", false);
    assert_eq!(get(port, "/").text(), "until close");
}

#[test]
fn follow_splits_absolute_urls() {
    let legacy = Legacy::start();
    let url = format!(
        "http://bucket.s3.localhost:{}/k%20ey/%2B?x=%2f#frag",
        legacy.port
    );
    let resp = follow(&url, "GET");
    let text = resp.text();
    assert!(text.contains("uri: /k%20ey/%2B?x=%2f\n"), "{text}");
    assert!(
        text.contains(&format!(
            "header: host: bucket.s3.localhost:{}\n",
            legacy.port
        )),
        "{text}"
    );
}

const AK: &str = "AKIDSELFTEST";
const SK: &str = "selftest/secret+key";
const KEY: &str = "dir/sub dir/a+b ü~(1).txt";

#[test]
fn s3_presigned_get_checks_signature() {
    let s3 = S3Server::start(AK, SK);
    s3.put_object("bucket-1", KEY, b"s3 bytes \x00\xff");
    let path = format!("/bucket-1/{}", encode_key(KEY));
    let ttl = Duration::from_secs(60);

    let good = presign("GET", &s3.endpoint(), &path, AK, SK, ttl);
    let resp = follow(&good, "GET");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"s3 bytes \x00\xff");

    let head = follow(&presign("HEAD", &s3.endpoint(), &path, AK, SK, ttl), "HEAD");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("11"));

    let wrong = follow(
        &presign("GET", &s3.endpoint(), &path, AK, "not-the-secret", ttl),
        "GET",
    );
    assert_eq!(wrong.status, 403, "{}", wrong.text());
    assert!(
        wrong.text().contains("SignatureDoesNotMatch"),
        "{}",
        wrong.text()
    );

    // Unsigned and unknown-key requests are refused too.
    let anon = get(s3.port, &path);
    assert_eq!(anon.status, 403, "{}", anon.text());
    assert!(anon.text().contains("AccessDenied"), "{}", anon.text());
    let stranger = follow(
        &presign("GET", &s3.endpoint(), &path, "NOBODY", SK, ttl),
        "GET",
    );
    assert_eq!(stranger.status, 403, "{}", stranger.text());

    // A correctly signed request for a missing key is a 404, not a 403.
    let missing = presign("GET", &s3.endpoint(), "/bucket-1/nope", AK, SK, ttl);
    let resp = follow(&missing, "GET");
    assert_eq!(resp.status, 404, "{}", resp.text());
    assert!(resp.text().contains("NoSuchKey"), "{}", resp.text());
}

#[test]
fn s3_virtual_host_style() {
    let s3 = S3Server::start_with_domain(AK, SK, "s3.localhost");
    s3.put_object("vbucket", KEY, b"vhost");
    let base = format!("http://vbucket.s3.localhost:{}", s3.port);
    let url = presign(
        "GET",
        &base,
        &format!("/{}", encode_key(KEY)),
        AK,
        SK,
        Duration::from_secs(60),
    );
    let resp = follow(&url, "GET");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.body, b"vhost");

    // Path style keeps working when the Host is the IP.
    let path = format!("/vbucket/{}", encode_key(KEY));
    let resp = follow(
        &presign(
            "GET",
            &s3.endpoint(),
            &path,
            AK,
            SK,
            Duration::from_secs(60),
        ),
        "GET",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
}

#[test]
fn s3_server_stops_on_drop() {
    let s3 = S3Server::start(AK, SK);
    let port = s3.port;
    drop(s3);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still open after drop"
    );
}

#[test]
#[should_panic(expected = "spillway exited before listening")]
fn spillway_start_reports_early_exit() {
    // Not a valid config for any version of spillway, so the child exits.
    let _s =
        Spillway::start_with(|port| format!("listen: \"127.0.0.1:{port}\"\nthis is: [not valid\n"));
}
