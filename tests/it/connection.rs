//! Connection handling by the front: pipelining, keep-alive across the local and proxied paths,
//! HTTP/1.0, `Connection: close`, broken request heads, request bodies on local answers, `Date`,
//! HEAD, and absolute-form request targets.
//!
//! These tests write raw bytes on a socket, so they control exactly what arrives in one write,
//! and read exactly one framed response at a time, so a stray byte (a HEAD body, an undrained
//! request body) shows up as a garbled next response.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{SystemTime, UNIX_EPOCH};

use support::{Response, Stack, StackOptions};

/// spillway's limit on a request head (`http1::MAX_HEAD`).
const MAX_HEAD: usize = 32 * 1024;
/// spillway drains request bodies up to this size after a local answer (`front::DRAIN_LIMIT`).
const DRAIN_LIMIT: usize = 64 * 1024;

/// A raw client connection: writes bytes as given, reads one response at a time.
struct Raw {
    reader: BufReader<TcpStream>,
}

impl Raw {
    fn open(port: u16) -> Raw {
        let stream =
            support::connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        Raw {
            reader: BufReader::new(stream),
        }
    }

    /// Writes `bytes` in one `write_all`.
    fn write(&mut self, bytes: impl AsRef<[u8]>) {
        self.reader
            .get_mut()
            .write_all(bytes.as_ref())
            .expect("write request bytes");
    }

    /// Reads one response (no body for HEAD, 1xx, 204, 304).
    fn read(&mut self, head_request: bool) -> Response {
        support::read_response(&mut self.reader, head_request).expect("one whole response")
    }

    /// Writes `bytes` and reads one response.
    fn exchange(&mut self, bytes: impl AsRef<[u8]>) -> Response {
        let head_request = bytes.as_ref().starts_with(b"HEAD ");
        self.write(bytes);
        self.read(head_request)
    }

    /// Asserts the server closes the connection with nothing more sent: a clean EOF.
    fn assert_closed(mut self, after: &str) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => assert!(
                rest.is_empty(),
                "after {after}: bytes after the response instead of EOF: {:?}",
                String::from_utf8_lossy(&rest)
            ),
            Err(e) => panic!("after {after}: expected the server to close, got {e}"),
        }
    }

    /// Asserts the server ends the connection with nothing more sent: EOF, or a reset when it
    /// closed with request bytes unread.
    fn assert_ended(mut self, after: &str) {
        let mut rest = Vec::new();
        match self.reader.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("after {after}: expected the server to close, got {e}"),
        }
        assert!(
            rest.is_empty(),
            "after {after}: bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        );
    }
}

/// `METHOD target HTTP/1.1` with `fields` (each `Name: value`), no body; `Host: spillway.test`
/// unless `fields` has its own Host.
fn req(method: &str, target: &str, fields: &[&str]) -> String {
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !fields
        .iter()
        .any(|f| f.to_ascii_lowercase().starts_with("host:"))
    {
        head.push_str("Host: spillway.test\r\n");
    }
    for field in fields {
        head.push_str(field);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    head
}

fn get(target: &str) -> String {
    req("GET", target, &[])
}

/// Asserts `resp` is the legacy upstream's echo of `method target`.
fn assert_upstream(resp: &Response, method: &str, target: &str) {
    assert_eq!(resp.status, 200, "{method} {target}: {}", resp.text());
    assert_eq!(
        resp.header("x-legacy"),
        Some("1"),
        "{method} {target} answered by the upstream"
    );
    let echo = resp.text();
    assert!(
        echo.lines().any(|l| l == format!("method: {method}"))
            && echo.lines().any(|l| l == format!("uri: {target}")),
        "{method} {target} reached the upstream as sent:\n{echo}"
    );
}

/// Asserts `resp` is a 200 for a local file with `body`, keeping the connection open.
fn assert_file(resp: &Response, body: &[u8]) {
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-legacy"), None, "answered locally");
    assert_eq!(resp.body, body);
    assert_eq!(resp.header("connection"), None, "an HTTP/1.1 keep-alive");
}

fn public_object_url(stack: &Stack, key: &str) -> String {
    format!("{}/media/uploads/{key}", stack.s3.endpoint())
}

// ---------------------------------------------------------------------------
// Pipelining and keep-alive
// ---------------------------------------------------------------------------

#[test]
fn pipelined_requests_are_answered_in_order() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"the first file");
    stack.put_local("static", "b.txt", b"the second, somewhat longer file");
    let mut conn = Raw::open(stack.port());
    let batch = [
        get("/static/a.txt"),
        get("/static/b.txt"),
        req("HEAD", "/static/b.txt", &[]),
        get("/static/missing.txt"),
        get("/uploads/avatars/nobody.png"),
        get("/static/a.txt"),
        // Last: handed to Pingora with the bytes the front has already read.
        get("/forum/after-the-batch?x=1"),
    ]
    .concat();
    conn.write(batch);

    assert_file(&conn.read(false), b"the first file");
    assert_file(&conn.read(false), b"the second, somewhat longer file");
    let head = conn.read(true);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("32"));
    let missing = conn.read(false);
    assert_eq!(missing.status, 404, "{}", missing.text());
    let redirect = conn.read(false);
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some(public_object_url(&stack, "avatars/nobody.png").as_str())
    );
    assert_file(&conn.read(false), b"the first file");
    assert_upstream(&conn.read(false), "GET", "/forum/after-the-batch?x=1");

    // The connection came back from the proxy and still serves.
    assert_file(
        &conn.exchange(get("/static/b.txt")),
        b"the second, somewhat longer file",
    );
}

#[test]
fn one_connection_alternates_between_the_upstream_and_local_answers() {
    let stack = Stack::start();
    stack.put_local("static", "logo.svg", b"<svg/>");
    stack.put_local("uploads", "avatars/me.png", b"\x89PNG me");
    let mut conn = Raw::open(stack.port());

    assert_upstream(&conn.exchange(get("/forum/")), "GET", "/forum/");
    assert_file(&conn.exchange(get("/static/logo.svg")), b"<svg/>");
    assert_upstream(
        &conn.exchange(get("/forum/view.php?id=7")),
        "GET",
        "/forum/view.php?id=7",
    );
    let redirect = conn.exchange(get("/uploads/avatars/someone-else.png"));
    assert_eq!(redirect.status, 302);
    assert_eq!(
        redirect.header("location"),
        Some(public_object_url(&stack, "avatars/someone-else.png").as_str())
    );
    assert_eq!(redirect.header("connection"), None);
    let post = conn.exchange(
        [
            req("POST", "/forum/post", &["Content-Length: 11"]),
            "hello there".to_owned(),
        ]
        .concat(),
    );
    assert_upstream(&post, "POST", "/forum/post");
    assert!(post.text().contains("body: hello there"), "{}", post.text());
    assert_file(
        &conn.exchange(get("/uploads/avatars/me.png")),
        b"\x89PNG me",
    );
    let head = conn.exchange(req("HEAD", "/forum/head", &[]));
    assert_eq!(head.header("x-legacy"), Some("1"));
    assert!(head.body.is_empty());
    assert_file(&conn.exchange(get("/static/logo.svg")), b"<svg/>");
    assert_upstream(&conn.exchange(get("/forum/last")), "GET", "/forum/last");
}

#[test]
fn a_head_arriving_byte_by_byte_is_read_whole() {
    let stack = Stack::start();
    stack.put_local("static", "slow.txt", b"slowly asked for");
    let mut conn = Raw::open(stack.port());
    // Twice: the second head follows a request on a kept-alive connection. Blank lines before
    // a request line are ignored (RFC 9112 §2.2).
    for _ in 0..2 {
        let request = format!("\r\n{}", req("GET", "/static/slow.txt", &["X-Split: a"]));
        for byte in request.as_bytes() {
            conn.write([*byte]);
        }
        assert_file(&conn.read(false), b"slowly asked for");
    }
}

#[test]
fn a_request_pipelined_behind_a_proxied_one_is_answered_or_cleanly_dropped() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"behind the proxy");
    let mut conn = Raw::open(stack.port());
    conn.write([get("/forum/first"), get("/static/a.txt")].concat());
    // Pingora's proxy (its pipelining off) delivers the first answer, then may close instead of
    // answering what it read past it (RFC 9112 §9.3.2: the client retries on a new
    // connection). So: either the second answer, intact, or a clean end of the connection.
    assert_upstream(&conn.read(false), "GET", "/forum/first");
    match conn.reader.fill_buf() {
        Ok([]) => {}
        Ok(_) => assert_file(&conn.read(false), b"behind the proxy"),
        Err(e) => panic!("neither an answer nor a clean close: {e}"),
    }
}

// ---------------------------------------------------------------------------
// Persistence: HTTP/1.0 and Connection: close
// ---------------------------------------------------------------------------

#[test]
fn http10_without_keep_alive_gets_connection_close_and_eof() {
    let stack = Stack::start();
    stack.put_local("static", "old.txt", b"for an old client");
    for (what, request) in [
        ("file", "GET /static/old.txt HTTP/1.0\r\n\r\n"),
        ("404", "GET /static/none.txt HTTP/1.0\r\n\r\n"),
        ("redirect", "GET /uploads/avatars/x.png HTTP/1.0\r\n\r\n"),
    ] {
        let mut conn = Raw::open(stack.port());
        let resp = conn.exchange(request);
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
        if what == "file" {
            assert_eq!(resp.body, b"for an old client");
        }
        conn.assert_closed(what);
    }
}

#[test]
fn http10_keep_alive_is_confirmed_and_kept() {
    let stack = Stack::start();
    stack.put_local("static", "old.txt", b"for an old client");
    let mut conn = Raw::open(stack.port());
    let keep = "GET /static/old.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    let resp = conn.exchange(keep);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"for an old client");
    assert_eq!(resp.header("connection"), Some("keep-alive"));

    let resp =
        conn.exchange("GET /uploads/avatars/y.png HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("connection"), Some("keep-alive"));

    let resp = conn.exchange(keep);
    assert_eq!(resp.body, b"for an old client");
    assert_eq!(resp.header("connection"), Some("keep-alive"));

    // The last request does not ask: the server closes after it.
    let resp = conn.exchange("GET /static/old.txt HTTP/1.0\r\n\r\n");
    assert_eq!(resp.body, b"for an old client");
    assert_eq!(resp.header("connection"), Some("close"));
    conn.assert_closed("an HTTP/1.0 request without keep-alive");
}

#[test]
fn connection_close_from_an_http11_client_is_honoured() {
    let stack = Stack::start();
    stack.put_local("static", "bye.txt", b"goodbye");
    for (what, target) in [
        ("file", "/static/bye.txt"),
        ("404", "/static/none.txt"),
        ("redirect", "/uploads/avatars/z.png"),
        ("presigned redirect", "/uploads/private/z.pdf"),
    ] {
        let mut conn = Raw::open(stack.port());
        // Any token list naming `close` counts.
        let resp = conn.exchange(req(
            "GET",
            target,
            &["Connection: TE, Close", "TE: trailers"],
        ));
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
        if what == "file" {
            assert_eq!(resp.body, b"goodbye");
        }
        conn.assert_closed(what);
    }

    // After keep-alive requests, the one that says close is the last.
    let mut conn = Raw::open(stack.port());
    assert_file(&conn.exchange(get("/static/bye.txt")), b"goodbye");
    let resp = conn.exchange(req("GET", "/static/bye.txt", &["Connection: close"]));
    assert_eq!(resp.body, b"goodbye");
    assert_eq!(resp.header("connection"), Some("close"));
    conn.assert_closed("Connection: close after a keep-alive request");
}

#[test]
fn connection_close_on_a_proxied_request_closes_too() {
    let stack = Stack::start();
    let mut conn = Raw::open(stack.port());
    assert_upstream(&conn.exchange(get("/forum/first")), "GET", "/forum/first");
    let resp = conn.exchange(req("GET", "/forum/last", &["Connection: close"]));
    assert_upstream(&resp, "GET", "/forum/last");
    conn.assert_closed("Connection: close on a proxied request");

    let mut conn = Raw::open(stack.port());
    let resp = conn.exchange("GET /forum/old HTTP/1.0\r\n\r\n");
    assert_eq!(resp.header("x-legacy"), Some("1"));
    conn.assert_closed("an HTTP/1.0 proxied request without keep-alive");
}

// ---------------------------------------------------------------------------
// Broken request heads
// ---------------------------------------------------------------------------

/// Sends `raw` on a fresh connection (nothing after it, so the server has read every byte when
/// it closes), and asserts the answer is `status` with `Connection: close`, then EOF.
fn assert_refused(port: u16, raw: &[u8], status: u16, what: &str) -> Response {
    let mut conn = Raw::open(port);
    conn.write(raw);
    let resp = conn.read(false);
    assert_eq!(resp.status, status, "{what}: {}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"), "{what}");
    assert_eq!(resp.header("x-legacy"), None, "{what}: never proxied");
    assert_eq!(
        resp.header("content-length"),
        Some(resp.body.len().to_string().as_str()),
        "{what}"
    );
    assert!(
        resp.text().starts_with(&status.to_string()),
        "{what}: a plain-text reason: {:?}",
        resp.text()
    );
    conn.assert_closed(what);
    resp
}

#[test]
fn an_oversized_request_head_gets_431_and_the_connection_closes() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");

    // Exactly the limit, still without the empty line that ends a head: the server must stop
    // reading there (and has read everything sent, so it closes cleanly).
    let start = "GET /static/a.txt HTTP/1.1\r\nHost: spillway.test\r\nX-Big: ";
    let filler = "a".repeat(MAX_HEAD - start.len() - 2);
    let unfinished = format!("{start}{filler}\r\n");
    assert_eq!(unfinished.len(), MAX_HEAD);
    assert_refused(
        stack.port(),
        unfinished.as_bytes(),
        431,
        "a 32 KiB unfinished head",
    );

    // A complete head over the limit. The server stops reading at the limit, so it may close
    // with bytes of this head unread, which the kernel answers with a reset after the 431.
    let filler = "c".repeat(MAX_HEAD + 8 * 1024);
    let over = req("GET", "/static/a.txt", &[&format!("X-Big: {filler}")]);
    let mut conn = Raw::open(stack.port());
    conn.write(&over);
    let resp = conn.read(false);
    assert_eq!(resp.status, 431, "{}", resp.text());
    assert_eq!(resp.header("connection"), Some("close"));
    conn.assert_ended("a 40 KiB head");

    // Too many header fields in a small head.
    let fields: Vec<String> = (0..120).map(|i| format!("X-Field-{i}: v")).collect();
    let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
    let many = req("GET", "/static/a.txt", &fields);
    assert!(many.len() < 4096);
    assert_refused(stack.port(), many.as_bytes(), 431, "120 header fields");

    // Just under the limit is served: the 431 is about the size.
    let filler = "b".repeat(MAX_HEAD - 1024);
    let big = req("GET", "/static/a.txt", &[&format!("X-Big: {filler}")]);
    let mut conn = Raw::open(stack.port());
    assert_file(&conn.exchange(&big), b"small");
    assert_file(&conn.exchange(get("/static/a.txt")), b"small");
}

#[test]
fn malformed_request_heads_get_400_and_the_connection_closes() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    for (what, raw) in [
        ("no target", "GET  HTTP/1.1\r\nHost: h\r\n\r\n"),
        ("garbage", "GARBAGE\r\n\r\n"),
        ("binary junk", "\x01\x02\x03 / HTTP/1.1\r\n\r\n"),
        (
            "relative target",
            "GET static/a.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        ("ftp target", "GET ftp://h/static/a.txt HTTP/1.1\r\n\r\n"),
        (
            "space in a field name",
            "GET /static/a.txt HTTP/1.1\r\nBad Name: v\r\n\r\n",
        ),
        (
            "field without colon",
            "GET /static/a.txt HTTP/1.1\r\nNoColon\r\n\r\n",
        ),
        ("HTTP/0.9 request line", "GET /static/a.txt\r\n\r\n"),
        (
            "space after the version",
            "GET /static/a.txt HTTP/1.1 \r\n\r\n",
        ),
        (
            "space before a colon",
            "GET /static/a.txt HTTP/1.1\r\nHost : h\r\n\r\n",
        ),
        (
            "obsolete line folding",
            "GET /static/a.txt HTTP/1.1\r\nX-A: b\r\n c\r\n\r\n",
        ),
        (
            "NUL in a field value",
            "GET /static/a.txt HTTP/1.1\r\nX-A: b\x00c\r\n\r\n",
        ),
    ] {
        assert_refused(stack.port(), raw.as_bytes(), 400, what);
    }
    // The server is fine afterwards.
    let mut conn = Raw::open(stack.port());
    assert_file(&conn.exchange(get("/static/a.txt")), b"small");
}

#[test]

fn a_request_line_broken_before_the_version_is_400_not_505() {
    let stack = Stack::start();
    for (what, raw) in [
        // httparse reads `b.txt HTTP/1.1` as the version: RFC 9112 §3 calls for 400.
        (
            "space in the target",
            "GET /static/a b.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        (
            "space in a proxied target",
            "GET /forum/a b HTTP/1.1\r\nHost: h\r\n\r\n",
        ),
        // HTTP-name is case-sensitive (RFC 9112 §2.3): not a version at all.
        (
            "lower-case http",
            "GET /static/a.txt http/1.1\r\nHost: h\r\n\r\n",
        ),
    ] {
        assert_refused(stack.port(), raw.as_bytes(), 400, what);
    }
}

#[test]

fn http11_requests_need_exactly_one_valid_host() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    for (what, raw) in [
        ("no Host", "GET /static/a.txt HTTP/1.1\r\n\r\n"),
        (
            "two Hosts",
            "GET /static/a.txt HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ),
        (
            "invalid Host",
            "GET /static/a.txt HTTP/1.1\r\nHost: a b\r\n\r\n",
        ),
        ("no Host, for the upstream", "GET /forum/x HTTP/1.1\r\n\r\n"),
        (
            "invalid Host, for the upstream",
            "GET /forum/x HTTP/1.1\r\nHost: a b\r\n\r\n",
        ),
    ] {
        assert_refused(stack.port(), raw.as_bytes(), 400, what);
    }
    // HTTP/1.0 may leave it out.
    let resp = Raw::open(stack.port()).exchange("GET /static/a.txt HTTP/1.0\r\n\r\n");
    assert_eq!((resp.status, resp.body.as_slice()), (200, &b"small"[..]));
}

#[test]
fn unsupported_http_versions_get_505() {
    let stack = Stack::start();
    for (what, raw) in [
        ("HTTP/2.0", "GET /static/a.txt HTTP/2.0\r\nHost: h\r\n\r\n"),
        (
            "HTTP/3.0 to the upstream",
            "GET /forum/ HTTP/3.0\r\nHost: h\r\n\r\n",
        ),
    ] {
        assert_refused(stack.port(), raw.as_bytes(), 505, what);
    }
}

/// RFC 9112 §2.3: a higher minor version of HTTP/1 is answered as the highest one spoken.
#[test]
fn higher_http_1_minor_versions_are_answered_as_1_1() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    for (target, want) in [("/static/a.txt", "small"), ("/forum/", "method: GET")] {
        let raw = format!("GET {target} HTTP/1.2\r\nHost: h\r\nConnection: close\r\n\r\n");
        let resp = support::send_raw(stack.port(), raw.as_bytes(), false).unwrap();
        assert_eq!(resp.status, 200, "{target}");
        assert!(resp.text().contains(want), "{target}: {}", resp.text());
    }
}

#[test]
fn ambiguous_body_framing_is_refused_before_any_routing() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    // Sent without their bodies: the refusal must not wait for them.
    for target in ["/static/a.txt", "/forum/post"] {
        for (what, fields) in [
            (
                "Content-Length and Transfer-Encoding",
                &["Content-Length: 5", "Transfer-Encoding: chunked"][..],
            ),
            (
                "Transfer-Encoding and Content-Length",
                &["Transfer-Encoding: chunked", "Content-Length: 5"][..],
            ),
            (
                "differing Content-Length fields",
                &["Content-Length: 5", "Content-Length: 6"][..],
            ),
            (
                "differing Content-Length list",
                &["Content-Length: 5, 6"][..],
            ),
            ("signed Content-Length", &["Content-Length: +5"][..]),
            (
                "chunked not last",
                &["Transfer-Encoding: chunked, gzip"][..],
            ),
        ] {
            let raw = req("POST", target, fields);
            assert_refused(
                stack.port(),
                raw.as_bytes(),
                400,
                &format!("{what} to {target}"),
            );
        }
        let raw = format!("POST {target} HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert_refused(
            stack.port(),
            raw.as_bytes(),
            400,
            &format!("HTTP/1.0 chunked to {target}"),
        );
    }

    // Repeating the same length is not ambiguous.
    let mut conn = Raw::open(stack.port());
    let raw = [
        req(
            "POST",
            "/forum/post",
            &["Content-Length: 5", "Content-Length: 5"],
        ),
        "12345".to_owned(),
    ]
    .concat();
    let resp = conn.exchange(raw);
    assert_upstream(&resp, "POST", "/forum/post");
    assert!(resp.text().contains("body: 12345"), "{}", resp.text());
}

// ---------------------------------------------------------------------------
// Request bodies on local answers
// ---------------------------------------------------------------------------

#[test]
fn a_small_body_on_a_local_request_is_drained_and_the_connection_reused() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"first");
    stack.put_local("static", "b.txt", b"second");
    // A body that would be a (broken) request of its own if it were not skipped.
    let body = "x\r\n\r\nGET /";
    let with_body = req(
        "GET",
        "/static/a.txt",
        &[&format!("Content-Length: {}", body.len())],
    );

    // The body in the same write as its head, and another request right after it.
    let mut conn = Raw::open(stack.port());
    conn.write([with_body.as_str(), body, &get("/static/b.txt")].concat());
    assert_file(&conn.read(false), b"first");
    assert_file(&conn.read(false), b"second");

    // The body sent only after the answer has arrived: the server reads it before the next head.
    let resp = conn.exchange(&with_body);
    assert_file(&resp, b"first");
    conn.write([body, &get("/static/b.txt")].concat());
    assert_file(&conn.read(false), b"second");

    // The same for a redirect and an error, and then the upstream on the same connection.
    let redirect = req(
        "GET",
        "/uploads/avatars/q.png",
        &[&format!("Content-Length: {}", body.len())],
    );
    let resp = conn.exchange([redirect.as_str(), body].concat());
    assert_eq!(resp.status, 302);
    assert_eq!(resp.header("connection"), None);
    let missing = req(
        "GET",
        "/static/missing",
        &[&format!("Content-Length: {}", body.len())],
    );
    let resp = conn.exchange([missing.as_str(), body].concat());
    assert_eq!(resp.status, 404);
    assert_eq!(resp.header("connection"), None);
    assert_upstream(&conn.exchange(get("/forum/then")), "GET", "/forum/then");

    // A body up to the drain limit still keeps the connection.
    let limit = req(
        "GET",
        "/static/a.txt",
        &[&format!("Content-Length: {DRAIN_LIMIT}")],
    );
    assert_file(&conn.exchange(&limit), b"first");
    conn.write(vec![b'z'; DRAIN_LIMIT]);
    assert_file(&conn.exchange(get("/static/b.txt")), b"second");
}

#[test]
fn bodies_a_local_answer_cannot_cheaply_skip_close_the_connection() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"first");
    let over_limit = format!("Content-Length: {}", DRAIN_LIMIT + 1);
    for (what, fields) in [
        ("chunked", &["Transfer-Encoding: chunked"][..]),
        ("gzip, chunked", &["Transfer-Encoding: gzip, chunked"][..]),
        ("a body over the drain limit", &[over_limit.as_str()][..]),
        (
            "Expect: 100-continue",
            &["Content-Length: 10", "Expect: 100-continue"][..],
        ),
    ] {
        // The head only: the server answers without the body, and with nothing unread when it
        // closes.
        let mut conn = Raw::open(stack.port());
        let resp = conn.exchange(req("GET", "/static/a.txt", fields));
        assert_eq!(resp.status, 200, "{what}");
        assert_eq!(resp.body, b"first", "{what}");
        assert_eq!(resp.header("connection"), Some("close"), "{what}");
        conn.assert_closed(what);
    }
}

// ---------------------------------------------------------------------------
// Date, HEAD, absolute-form targets
// ---------------------------------------------------------------------------

const SITE: &str = r#"  - prefix: /site
    root: www/site
    index: [index.html]
"#;

fn site_stack() -> Stack {
    Stack::start_with(StackOptions {
        extra_routes: SITE,
        extra_roots: &["site"],
        ..StackOptions::default()
    })
}

fn whole_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[test]
fn every_response_from_the_front_carries_a_current_date() {
    let stack = site_stack();
    stack.put_local("static", "a.txt", b"dated");
    stack.put_local("site", "docs/index.html", b"<h1>docs</h1>");
    let etag = {
        let mut conn = Raw::open(stack.port());
        let resp = conn.exchange(get("/static/a.txt"));
        resp.header("etag").expect("ETag").to_owned()
    };
    let if_none_match = format!("If-None-Match: {etag}");
    let keep_alive: Vec<(&str, String, u16)> = vec![
        ("file", get("/static/a.txt"), 200),
        ("HEAD file", req("HEAD", "/static/a.txt", &[]), 200),
        (
            "range",
            req("GET", "/static/a.txt", &["Range: bytes=0-1"]),
            206,
        ),
        (
            "not modified",
            req("GET", "/static/a.txt", &[&if_none_match]),
            304,
        ),
        (
            "unsatisfiable",
            req("GET", "/static/a.txt", &["Range: bytes=99-"]),
            416,
        ),
        (
            "failed precondition",
            req("GET", "/static/a.txt", &["If-Match: \"x\""]),
            412,
        ),
        ("add slash", get("/site/docs"), 301),
        ("public redirect", get("/uploads/avatars/d.png"), 302),
        ("presigned redirect", get("/uploads/private/d.pdf"), 302),
        ("not found", get("/static/none"), 404),
        ("HEAD not found", req("HEAD", "/static/none", &[]), 404),
        (
            "closing",
            req("GET", "/static/a.txt", &["Connection: close"]),
            200,
        ),
    ];
    let mut conn = Raw::open(stack.port());
    let mut checked = 0;
    let mut check = |what: &str, before: SystemTime, resp: &Response, status: u16| {
        let after = SystemTime::now();
        assert_eq!(resp.status, status, "{what}: {}", resp.text());
        let dates = resp.header_all("date");
        assert_eq!(
            dates.len(),
            1,
            "{what}: exactly one Date: {:?}",
            resp.headers
        );
        let date = httpdate::parse_http_date(dates[0])
            .unwrap_or_else(|e| panic!("{what}: Date {:?}: {e}", dates[0]));
        let date = whole_seconds(date);
        assert!(
            whole_seconds(before) <= date && date <= whole_seconds(after),
            "{what}: Date {:?} is not the time of the response",
            dates[0]
        );
        checked += 1;
    };
    for (what, raw, status) in &keep_alive {
        let before = SystemTime::now();
        let resp = conn.exchange(raw);
        check(what, before, &resp, *status);
    }
    conn.assert_closed("Connection: close");
    for (what, raw, status) in [
        ("bad request", "GARBAGE\r\n\r\n", 400),
        ("bad version", "GET / HTTP/2.0\r\n\r\n", 505),
        (
            "bad framing",
            "POST /static/a.txt HTTP/1.1\r\nContent-Length: 1, 2\r\n\r\n",
            400,
        ),
    ] {
        let before = SystemTime::now();
        let resp = assert_refused(stack.port(), raw.as_bytes(), status, what);
        check(what, before, &resp, status);
    }
    assert_eq!(checked, keep_alive.len() + 3);
}

/// The headers of `resp` but `Date` (which may tick between two responses).
fn headers_but_date(resp: &Response) -> Vec<(String, String)> {
    resp.headers
        .iter()
        .filter(|(name, _)| !name.eq_ignore_ascii_case("date"))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect()
}

#[test]
fn head_gets_the_headers_of_get_and_no_body() {
    let stack = site_stack();
    let small = b"tiny".to_vec();
    // Large enough for the zero-copy path of a GET.
    let large: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    stack.put_local("static", "small.txt", &small);
    stack.put_local("static", "large.bin", &large);
    stack.put_local("site", "docs/index.html", b"<h1>docs</h1>");

    let mut conn = Raw::open(stack.port());
    for (target, body) in [
        ("/static/small.txt", Some(&small)),
        ("/static/large.bin", Some(&large)),
        ("/static/missing.txt", None),
        ("/uploads/avatars/h.png", None),
        ("/site/docs", None),
    ] {
        let get_resp = conn.exchange(get(target));
        let head_resp = conn.exchange(req("HEAD", target, &[]));
        assert_eq!(head_resp.status, get_resp.status, "{target}");
        assert_eq!(
            headers_but_date(&head_resp),
            headers_but_date(&get_resp),
            "HEAD {target} has the headers of GET"
        );
        assert!(head_resp.header("date").is_some(), "{target}");
        if let Some(body) = body {
            assert_eq!(get_resp.body, *body, "{target}");
            assert_eq!(
                head_resp.header("content-length"),
                Some(body.len().to_string().as_str()),
                "{target}: the length GET sends"
            );
        }
        // Had the HEAD answer carried a body, this would read its bytes as a status line.
        assert_file(&conn.exchange(get("/static/small.txt")), &small);
    }

    // Several HEADs pipelined: each answer ends at its head.
    conn.write(
        [
            req("HEAD", "/static/large.bin", &[]),
            req("HEAD", "/static/small.txt", &[]),
            get("/static/small.txt"),
        ]
        .concat(),
    );
    assert_eq!(
        conn.read(true).header("content-length"),
        Some(large.len().to_string().as_str())
    );
    assert_eq!(conn.read(true).header("content-length"), Some("4"));
    assert_file(&conn.read(false), &small);
}

#[test]
fn absolute_form_targets_never_put_their_host_in_a_location() {
    let stack = site_stack();
    stack.put_local("uploads", "avatars/here.png", b"local avatar");
    stack.put_local("site", "docs/index.html", b"<h1>docs</h1>");
    let mut conn = Raw::open(stack.port());
    let mut answers = Vec::new();

    let resp = conn.exchange(req(
        "GET",
        "http://evil.example/uploads/avatars/x.png",
        &["Host: evil.example"],
    ));
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("location"),
        Some(public_object_url(&stack, "avatars/x.png").as_str()),
        "built from the bucket's configured endpoint"
    );
    answers.push(resp);

    let resp = conn.exchange(req(
        "GET",
        "HTTPS://evil.example:8443/uploads/private/y.pdf?download=1",
        &[],
    ));
    assert_eq!(resp.status, 302);
    let location = resp.header("location").expect("Location");
    let want = format!("{}/media/uploads/private/y.pdf?", stack.s3.endpoint());
    assert!(
        location.starts_with(&want),
        "presigned for the configured endpoint: {location}"
    );
    answers.push(resp);

    // The slash redirect is relative: from the target's path and query only.
    let resp = conn.exchange(get("http://evil.example/site/docs?x=1"));
    assert_eq!(resp.status, 301);
    assert_eq!(resp.header("location"), Some("/site/docs/?x=1"));
    answers.push(resp);

    // The path of an absolute-form target is used for local files as well.
    let resp = conn.exchange(get("http://evil.example/uploads/avatars/here.png"));
    assert_file(&resp, b"local avatar");
    answers.push(resp);

    for resp in &answers {
        for (name, value) in &resp.headers {
            assert!(
                !value.to_ascii_lowercase().contains("evil.example"),
                "{name}: {value}"
            );
        }
    }
}

/// A request pipelined behind a proxied one is never lost: the proxied response either leaves
/// the connection open and the next response follows, or says `Connection: close`.
#[test]
fn a_request_pipelined_behind_a_proxied_one_is_answered_or_the_close_is_announced() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    let mut stream = support::connect(stack.port()).unwrap();
    stream
        .write_all(
            b"GET /forum/ HTTP/1.1\r\nHost: h\r\n\r\nGET /static/a.txt HTTP/1.1\r\nHost: h\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    let first = support::read_response(&mut reader, false).unwrap();
    assert_eq!(first.status, 200, "{:?}", first.headers);
    if first.header("connection") == Some("close") {
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "nothing after an announced close");
    } else {
        let second = support::read_response(&mut reader, false)
            .unwrap_or_else(|e| panic!("{e} after {:?}", first.headers));
        assert_eq!(
            (second.status, second.body.as_slice()),
            (200, &b"small"[..])
        );
    }
}

/// Targets with a byte RFC 3986 never leaves unencoded are the client's mistake: 400 at the
/// front, before routing, on every way a request can go (the short way upstream, Pingora's
/// proxy, a route's files); never a 502 that blames the upstream.
#[test]
fn targets_with_bytes_that_must_be_encoded_are_400_before_routing() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"a");
    let targets = [
        "/legacy/`age",
        "/legacy/page>q=1",
        "/files<a.txt",
        "/ub/x.jpg\"",
        "/a{b}",
        "/a|b",
        "/a\\b",
        "/a^b",
        "/static/a.txt#frag",
        "/a[1]",
        "/q?x=<script>",
        "/caf\u{e9}",
    ];
    for target in targets {
        for method in ["GET", "HEAD", "POST"] {
            let head = if method == "POST" {
                req(method, target, &["Content-Length: 1"]) + "x"
            } else {
                req(method, target, &[])
            };
            let resp = support::send_raw(stack.port(), head.as_bytes(), method == "HEAD")
                .unwrap_or_else(|e| panic!("{method} {target}: {e}"));
            assert_eq!(resp.status, 400, "{method} {target}");
            assert_eq!(
                resp.header("x-legacy"),
                None,
                "{method} {target}: not forwarded"
            );
        }
    }
    // Encoded, the same targets go their way as usual.
    let resp = support::send_raw(stack.port(), get("/legacy/%60age").as_bytes(), false).unwrap();
    assert_upstream(&resp, "GET", "/legacy/%60age");
}
