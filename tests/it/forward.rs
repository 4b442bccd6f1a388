//! The short way upstream (bodyless GET and HEAD): framing, hop-by-hop fields, a pooled
//! connection the upstream closed, and an upstream that fails before or during its answer.
//! The upstream here is a scripted HTTP/1.1 server on a real socket, so each test controls
//! exactly what comes back on the wire.

use crate::support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use support::{connect, read_response, send_raw, wait_until, Conn, Spillway};

/// Bytes of body the truncated answer sends before it hangs up: more than spillway gathers
/// before its first write to the client.
const SENT_BEFORE_HANGING_UP: usize = 200 * 1024;

/// An upstream that answers by path, and remembers every request head it read:
/// - `/chunked`: a chunked `hello world` (only the head, to HEAD); `/close`: an HTTP/1.0 body ended by closing;
/// - `/hop`: hop-by-hop fields of its own, and `X-Public`;
/// - `/head`: `Content-Length: 1234` (and the body, unless HEAD);
/// - `/once`: answers the first request on a connection and closes at the second, unanswered,
///   as an upstream whose keep-alive timeout ran out does;
/// - `/cut`: announces 1 MB, sends `SENT_BEFORE_HANGING_UP` bytes, hangs up;
/// - `/silent`: reads the request and never answers;
/// - `/stream`: sends the head and a first chunk, then the rest once the test says `go`;
/// - `/held`: answers `held` once the test says `go`, and counts connections that spillway
///   closed while it waited;
/// - `/once-cut`: answers the first request on a connection; at the second, sends a head and
///   part of the body, then hangs up;
/// - `/switch`: a `101 Switching Protocols`, then what would pass for an answer and a
///   smuggled one; `/gzip`: `Transfer-Encoding: gzip, chunked`; `/nothing`: a 204 with a
///   `Content-Length`; `/hints`: nine `103 Early Hints` before its answer.
struct Scripted {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    go: Arc<(Mutex<bool>, Condvar)>,
}

/// Waits for `go`, unless the connection closes first: `false` then.
fn wait_for_go(go: &(Mutex<bool>, Condvar), reader: &mut BufReader<TcpStream>) -> bool {
    let (said, changed) = go;
    let mut said = said.lock().expect("go");
    while !*said {
        let (now, _) = changed
            .wait_timeout(said, Duration::from_millis(50))
            .expect("go");
        said = now;
        // A peek: has spillway hung up meanwhile?
        let socket = reader.get_ref();
        socket.set_nonblocking(true).expect("nonblocking");
        let peeked = socket.peek(&mut [0u8; 1]);
        socket.set_nonblocking(false).expect("blocking");
        if matches!(peeked, Ok(0)) {
            return false;
        }
    }
    true
}

impl Scripted {
    fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the scripted upstream");
        let port = listener.local_addr().expect("local_addr").port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let go = Arc::new((Mutex::new(false), Condvar::new()));
        let (recorded, signal) = (Arc::clone(&heads), Arc::clone(&go));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (heads, go) = (Arc::clone(&recorded), Arc::clone(&signal));
                std::thread::spawn(move || serve(stream, &heads, &go));
            }
        });
        Scripted { port, heads, go }
    }

    /// Lets `/stream` send the rest of its answer.
    fn go(&self) {
        let (said, changed) = &*self.go;
        *said.lock().expect("go") = true;
        changed.notify_all();
    }

    /// The request heads read so far, whose request line names `target`.
    fn heads_for(&self, target: &str) -> Vec<String> {
        let line = format!(" {target} HTTP/1.1\r\n");
        let heads = self.heads.lock().expect("heads");
        heads
            .iter()
            .filter(|h| h.contains(&line))
            .cloned()
            .collect()
    }
}

fn serve(stream: TcpStream, heads: &Mutex<Vec<String>>, go: &(Mutex<bool>, Condvar)) {
    let mut writer = stream.try_clone().expect("clone the upstream socket");
    let mut reader = BufReader::new(stream);
    let mut answered = 0;
    while let Some(head) = support::read_request_head(&mut reader) {
        heads.lock().expect("heads").push(head.clone());
        let target = head.split(' ').nth(1).unwrap_or("").to_owned();
        let head_request = head.starts_with("HEAD ");
        answered += 1;
        let path = target.split('?').next().unwrap_or("");
        let reply: Vec<u8> = match path {
            "/chunked" if head_request => {
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec()
            }
            "/chunked" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
            "/hop" => b"HTTP/1.1 200 OK\r\nConnection: X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Public: yes\r\nContent-Length: 2\r\n\r\nok".to_vec(),
            "/head" if head_request => b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n".to_vec(),
            "/head" => [&b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"[..], &[b'h'; 1234]].concat(),
            "/stream" => {
                let first = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst \r\n";
                if writer.write_all(first).is_err() {
                    return;
                }
                let (said, changed) = go;
                let mut said = said.lock().expect("go");
                while !*said {
                    said = changed.wait(said).expect("go");
                }
                b"6\r\nsecond\r\n0\r\n\r\n".to_vec()
            }
            "/held" => {
                if !wait_for_go(go, &mut reader) {
                    heads.lock().expect("heads").push("closed while held".into());
                    return;
                }
                b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nheld".to_vec()
            }
            "/once-cut" if answered > 1 => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart");
                return;
            }
            "/once-cut" => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce".to_vec(),
            "/switch" => {
                let _ = writer.write_all(b"HTTP/1.1 101 Switching Protocols\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled");
                return;
            }
            "/gzip" => b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nzz\r\n0\r\n\r\n".to_vec(),
            "/nothing" => b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n".to_vec(),
            "/hints" => {
                let mut reply = b"HTTP/1.1 103 Early Hints\r\n\r\n".repeat(9);
                reply.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlate!");
                reply
            }
            // The head a HEAD asked for, then, once told, an answer nobody asked for on the
            // idle connection (a buggy upstream's late body, a 408 before it closes).
            "/late" => {
                if writer
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n")
                    .is_err()
                {
                    return;
                }
                let (said, changed) = go;
                let mut said = said.lock().expect("go");
                while !*said {
                    said = changed.wait(said).expect("go");
                }
                drop(said);
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled");
                heads.lock().expect("heads").push("late sent".into());
                continue;
            }
            "/host" => {
                let host = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("host: ").map(str::to_owned))
                    .unwrap_or_else(|| "none".into());
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{host}", host.len()).into_bytes()
            }
            "/conn" => {
                let count = answered.to_string();
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{count}", count.len()).into_bytes()
            }
            raw if raw.starts_with("/raw/") => match MALFORMED.iter().find(|m| raw == format!("/raw/{}", m.0)) {
                Some((_, reply, _)) => reply.to_vec(),
                None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
            },
            "/once" if answered > 1 => return,
            "/once" => b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nonce".to_vec(),
            "/close" => {
                let _ = writer.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil close");
                return;
            }
            "/cut" => {
                let mut reply = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n".to_vec();
                reply.extend(std::iter::repeat_n(b'c', SENT_BEFORE_HANGING_UP));
                let _ = writer.write_all(&reply);
                return;
            }
            "/silent" => {
                // Until spillway gives up and closes.
                let _ = reader.read_to_end(&mut Vec::new());
                return;
            }
            _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

/// A scripted upstream, and spillway with no routes before it: every request goes there.
fn scripted_behind_spillway(read_timeout: &str) -> (Scripted, Spillway) {
    let upstream = Scripted::start();
    let upstream_port = upstream.port;
    let proxy = Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{upstream_port}\"\n    read_timeout: {read_timeout}\ndefault_upstream: legacy\n"
        )
    });
    (upstream, proxy)
}

#[test]
fn a_chunked_answer_goes_chunked_to_http11_and_until_close_to_http10() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");

    let mut conn = Conn::open(proxy.port);
    let resp = conn.send("GET", "/chunked", &[], b"");
    assert_eq!((resp.status, resp.text().as_str()), (200, "hello world"));
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.header("content-length"), None);
    // The connection carries on: the chunked body ended where it said.
    let again = conn.send("GET", "/chunked", &[], b"");
    assert_eq!(again.text(), "hello world");

    // HTTP/1.0 has no chunks: the body ends with the connection.
    let old = send_raw(
        proxy.port,
        b"GET /chunked HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        false,
    )
    .expect("an HTTP/1.0 answer");
    assert_eq!((old.status, old.text().as_str()), (200, "hello world"));
    assert_eq!(old.header("transfer-encoding"), None);
    assert_eq!(old.header("connection"), Some("close"));

    // An upstream body that ends with its connection is relayed to an HTTP/1.1 client in
    // chunks, on a connection that lives on.
    let mut conn = Conn::open(proxy.port);
    let resp = conn.send("GET", "/close", &[], b"");
    assert_eq!((resp.status, resp.text().as_str()), (200, "until close"));
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(conn.send("GET", "/chunked", &[], b"").status, 200);
}

#[test]
fn hop_by_hop_fields_stay_on_their_hop_both_ways() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let resp = Conn::open(proxy.port).send(
        "GET",
        "/hop?x=1",
        &[
            ("Connection", "X-Client-Secret"),
            ("X-Client-Secret", "s3cr3t"),
            ("Keep-Alive", "timeout=9"),
            ("TE", "trailers"),
            ("Proxy-Authorization", "Basic dXNlcjpwYXNz"),
            ("X-Request-Id", "req-42"),
            ("Cookie", "sid=1"),
        ],
        b"",
    );
    assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    assert_eq!(resp.header("x-public"), Some("yes"));
    for name in ["x-private", "keep-alive", "proxy-connection"] {
        assert_eq!(resp.header(name), None, "{name} is the upstream's hop only");
    }
    assert_eq!(
        resp.header("connection"),
        None,
        "a kept-alive HTTP/1.1 answer"
    );

    let heads = upstream.heads_for("/hop?x=1");
    let head = heads
        .first()
        .expect("the upstream got the request")
        .to_lowercase();
    for gone in [
        "connection:",
        "x-client-secret",
        "keep-alive",
        "\nte:",
        "proxy-authorization",
    ] {
        assert!(!head.contains(gone), "{gone} passed on:\n{head}");
    }
    for kept in [
        "cookie: sid=1\r\n",
        "x-forwarded-for: 127.0.0.1\r\n",
        "x-forwarded-proto: http\r\n",
        "x-request-id: req-42\r\n",
    ] {
        assert!(head.contains(kept), "{kept:?} missing:\n{head}");
    }
}

#[test]
fn the_upstream_sees_the_request_id_the_log_has() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    assert_eq!(
        Conn::open(proxy.port).send("GET", "/hop", &[], b"").status,
        200
    );
    let head = upstream.heads_for("/hop").remove(0).to_lowercase();
    let id = head
        .lines()
        .find_map(|l| l.strip_prefix("x-request-id: "))
        .expect("an id sent upstream")
        .to_owned();
    let logs = proxy.wait_for_log("path=\"/hop\"");
    let line = logs.lines().find(|l| l.contains("path=\"/hop\"")).unwrap();
    assert!(
        line.contains(&format!("request_id=\"{id}\"")),
        "{id} in {line}"
    );
}

#[test]
fn a_head_request_gets_the_length_a_get_would_and_no_body() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    let mut conn = Conn::open(proxy.port);
    let head = conn.send("HEAD", "/head", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("1234"));
    assert!(head.body.is_empty());
    // No body bytes were left on the connection: the next answer reads cleanly.
    let get = conn.send("GET", "/head", &[], b"");
    assert_eq!(get.body, vec![b'h'; 1234]);
    // Nor after the head of a chunked answer (not even the last, empty chunk).
    let head = conn.send("HEAD", "/chunked", &[], b"");
    assert_eq!(head.status, 200);
    let get = conn.send("GET", "/chunked", &[], b"");
    assert_eq!(get.text(), "hello world");
}

#[test]
fn a_pooled_connection_the_upstream_closed_is_retried_unnoticed() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let first = Conn::open(proxy.port).send("GET", "/once", &[], b"");
    assert_eq!((first.status, first.text().as_str()), (200, "once"));
    // The pooled connection takes the second request and closes unanswered; a new one
    // answers it.
    let second = Conn::open(proxy.port).send("GET", "/once", &[], b"");
    assert_eq!((second.status, second.text().as_str()), (200, "once"));
    assert_eq!(
        upstream.heads_for("/once").len(),
        3,
        "asked on the pooled connection, then again on a new one"
    );
}

#[test]
fn an_upstream_that_hangs_up_midway_drops_the_client_connection_and_says_so() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    let mut stream = connect(proxy.port).expect("connect");
    stream
        .write_all(b"GET /cut HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(stream);
    assert!(
        read_response(&mut reader, false).is_err(),
        "the client must see the answer end short, not a whole one"
    );
    let logs = proxy.wait_for_log("path=\"/cut\"");
    let line = logs.lines().find(|l| l.contains("path=\"/cut\"")).unwrap();
    let said = format!(
        "cut_short=true error=\"upstream: Peer prematurely closed connection with {} bytes of body remaining to read\"",
        1_000_000 - SENT_BEFORE_HANGING_UP
    );
    assert!(
        line.contains("status=200") && line.contains(&said),
        "{line}"
    );
}

#[test]
fn a_silent_upstream_is_a_502_at_its_read_timeout() {
    let (upstream, proxy) = scripted_behind_spillway("1s");
    // On a pooled connection: a slow upstream is not taken for one that had closed it.
    assert_eq!(
        Conn::open(proxy.port).send("GET", "/hop", &[], b"").status,
        200
    );
    let started = Instant::now();
    let resp = Conn::open(proxy.port).send("GET", "/silent", &[], b"");
    assert_eq!(resp.status, 502);
    assert!(started.elapsed() >= Duration::from_secs(1));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "asked once, not again"
    );
    assert_eq!(upstream.heads_for("/silent").len(), 1);
    let said = "no answer from upstream: while reading response headers: timed out upstream=";
    assert!(proxy.wait_for_log(said).contains("upstream=\"legacy\""));
}

#[test]
fn pipelined_requests_to_the_upstream_are_answered_in_order() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    let mut stream = connect(proxy.port).expect("connect");
    stream
        .write_all(b"GET /hop HTTP/1.1\r\nHost: t\r\n\r\nGET /chunked HTTP/1.1\r\nHost: t\r\n\r\nHEAD /head HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    let mut reader = BufReader::new(stream);
    let first = read_response(&mut reader, false).expect("first");
    let second = read_response(&mut reader, false).expect("second");
    let third = read_response(&mut reader, true).expect("third");
    assert_eq!(first.text(), "ok");
    assert_eq!(second.text(), "hello world");
    assert_eq!(third.header("content-length"), Some("1234"));
}

#[test]
fn what_has_arrived_is_relayed_before_the_rest_is_waited_for() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let mut stream = connect(proxy.port).expect("connect");
    stream
        .write_all(b"GET /stream HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    // The upstream holds the rest back until the first chunk has reached the client.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("first ") {
        let n = stream
            .read(&mut buf)
            .expect("the first chunk, before the rest was sent");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    upstream.go();
    let mut reader = BufReader::new(stream);
    let mut rest = String::new();
    while !rest.ends_with("0\r\n\r\n") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).expect("the rest") > 0, "{rest}");
        rest.push_str(&line);
    }
    assert!(rest.contains("second"), "{rest}");
}

#[test]
fn a_request_is_not_sent_again_once_an_answer_had_begun() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    assert_eq!(
        Conn::open(proxy.port)
            .send("GET", "/once-cut", &[], b"")
            .text(),
        "once"
    );
    // On the pooled connection, the upstream starts an answer and hangs up: the application
    // may have acted on the request, so it is not asked again.
    // The client gets a 502, or the start of the answer cut short, as the hang-up arrives
    // before or after spillway relayed the start.
    if let Ok(resp) = Conn::open(proxy.port).try_send("GET", "/once-cut", &[], b"") {
        assert_eq!(resp.status, 502);
    }
    assert_eq!(upstream.heads_for("/once-cut").len(), 2);
}

#[test]
fn answers_that_cannot_be_relayed_are_502s_and_smuggle_nothing() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    for path in ["/switch", "/gzip", "/hints"] {
        let mut conn = Conn::open(proxy.port);
        let resp = conn.send("GET", path, &[], b"");
        assert_eq!(resp.status, 502, "{path}: {:?}", resp.text());
        // The next answer on the connection is the next request's own.
        let next = conn.send("GET", "/chunked", &[], b"");
        assert_eq!(next.text(), "hello world", "after {path}");
    }
    let logs = proxy.wait_for_log("101 Switching Protocols to a request for no upgrade");
    for why in [
        "101 Switching Protocols to a request for no upgrade",
        "a transfer coding other than chunked",
        "too many interim (1xx) answers",
    ] {
        let said = format!("an answer from upstream that cannot be relayed: {why} upstream=");
        assert!(logs.contains(&said), "{said:?} in {logs}");
    }
}

/// Answers no upstream may have relayed: name, the bytes, and why they are refused.
const MALFORMED: [(&str, &[u8], &str); 11] = [
    (
        "length-and-chunked",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "both Content-Length and Transfer-Encoding",
    ),
    (
        "two-lengths",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "two different Content-Length values",
    ),
    (
        "signed-length",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "an invalid Content-Length",
    ),
    (
        "bad-chunk-size",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        "a malformed chunked body",
    ),
    (
        "chunk-overrun",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello, world\r\n0\r\n\r\n",
        "a malformed chunked body",
    ),
    (
        "other-coding",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzz",
        "a transfer coding other than chunked",
    ),
    (
        "chunked-twice",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "a transfer coding other than chunked",
    ),
    (
        "interim-flood",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "too many interim (1xx) answers",
    ),
    (
        "bad-field",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        "a malformed response head",
    ),
    (
        "not-http",
        b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
        "a malformed response head",
    ),
    (
        "http2-preface",
        b"HTTP/2 200\r\ncontent-length: 0\r\n\r\n",
        "a malformed response head",
    ),
];

#[test]
fn each_malformed_answer_is_a_whole_502_and_its_connection_is_not_reused() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    let mut conn = Conn::open(proxy.port);
    for (name, _, why) in MALFORMED {
        // A pooled connection takes the malformed answer.
        assert_eq!(conn.send("GET", "/conn", &[], b"").status, 200, "{name}");
        let resp = conn.send("GET", &format!("/raw/{name}"), &[], b"");
        assert_eq!(
            (
                resp.status,
                resp.text().as_str(),
                resp.header("content-length")
            ),
            (502, "502 Bad Gateway\n", Some("16")),
            "{name}"
        );
        // The client's connection carries on; the upstream's does not: the next request
        // is the first on a new one.
        let next = conn.send("GET", "/conn", &[], b"");
        assert_eq!(
            next.text(),
            "1",
            "{name}: the upstream connection was reused"
        );
        let said = format!("an answer from upstream that cannot be relayed: {why} upstream=");
        assert!(proxy.wait_for_log(&said).contains(&said), "{name}");
    }
}

#[test]
fn bytes_an_idle_upstream_connection_sends_unasked_are_never_an_answer() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let head = Conn::open(proxy.port).send("HEAD", "/late", &[], b"");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("8"))
    );
    // The connection is idle in the pool when the upstream sends an answer unasked.
    upstream.go();
    wait_until("the upstream sent its unasked answer", || {
        upstream
            .heads
            .lock()
            .expect("heads")
            .iter()
            .any(|h| h == "late sent")
    });
    let next = Conn::open(proxy.port).send("GET", "/conn", &[], b"");
    assert_eq!(
        (next.status, next.text().as_str()),
        (200, "1"),
        "the next request goes on a new connection and gets its own answer"
    );
}

#[test]
fn an_http10_request_without_host_reaches_the_upstream_with_one() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let resp =
        support::send_raw(proxy.port, b"GET /host HTTP/1.0\r\n\r\n", false).expect("an answer");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), format!("127.0.0.1:{}", upstream.port));
    let with = support::send_raw(
        proxy.port,
        b"GET /host HTTP/1.0\r\nHost: site.test\r\n\r\n",
        false,
    )
    .expect("an answer");
    assert_eq!(
        with.text(),
        "site.test",
        "the client's own Host is passed on"
    );
}

#[test]
fn a_204_carries_no_length() {
    let (_upstream, proxy) = scripted_behind_spillway("10s");
    let mut conn = Conn::open(proxy.port);
    let resp = conn.send("GET", "/nothing", &[], b"");
    assert_eq!(resp.status, 204);
    assert_eq!(resp.header("content-length"), None);
    assert_eq!(conn.send("GET", "/chunked", &[], b"").text(), "hello world");
}

#[test]
fn a_request_whose_connection_header_names_host_is_refused_and_not_forwarded() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let resp = Conn::open(proxy.port).send("GET", "/hop", &[("Connection", "Host")], b"");
    assert_eq!(resp.status, 400);
    assert!(upstream.heads_for("/hop").is_empty());
}

#[test]
fn a_client_that_hangs_up_while_the_upstream_thinks_abandons_the_request() {
    // Far longer than the test waits for its log line.
    let (upstream, proxy) = scripted_behind_spillway("600s");
    let mut stream = connect(proxy.port).expect("connect");
    stream
        .write_all(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    wait_until("the upstream has the request", || {
        !upstream.heads_for("/held").is_empty()
    });
    drop(stream);
    let logs = proxy.wait_for_log("status=499");
    let line = logs.lines().find(|l| l.contains("status=499")).unwrap();
    assert!(
        line.contains("path=\"/held\"")
            && line.contains(
                "cut_short=true error=\"the client closed the connection before the upstream answered\""
            ),
        "{line}"
    );
    // And the upstream's connection is closed rather than left waiting.
    let closed = || {
        let heads = upstream.heads.lock().expect("heads");
        heads.iter().any(|h| h == "closed while held")
    };
    wait_until("the upstream connection closed", closed);
}

#[test]
fn a_request_pipelined_while_the_upstream_thinks_is_answered_next() {
    let (upstream, proxy) = scripted_behind_spillway("600s");
    let mut stream = connect(proxy.port).expect("connect");
    stream
        .write_all(b"GET /held HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send");
    wait_until("the upstream has the request", || {
        !upstream.heads_for("/held").is_empty()
    });
    stream
        .write_all(b"GET /hop HTTP/1.1\r\nHost: t\r\n\r\n")
        .expect("send the next");
    upstream.go();
    let mut reader = BufReader::new(stream);
    assert_eq!(
        read_response(&mut reader, false).expect("first").text(),
        "held"
    );
    assert_eq!(
        read_response(&mut reader, false).expect("second").text(),
        "ok"
    );
}

#[test]
fn every_x_forwarded_for_line_is_kept_before_the_client() {
    let (upstream, proxy) = scripted_behind_spillway("10s");
    let raw = b"GET /hop?xff HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-For: 198.51.100.2\r\nConnection: close\r\n\r\n";
    assert_eq!(
        support::send_raw(proxy.port, raw, false)
            .expect("answer")
            .status,
        200
    );
    let head = upstream.heads_for("/hop?xff").remove(0).to_lowercase();
    let lines: Vec<&str> = head
        .lines()
        .filter(|l| l.starts_with("x-forwarded-for:"))
        .collect();
    assert_eq!(
        lines,
        ["x-forwarded-for: 203.0.113.1, 198.51.100.2, 127.0.0.1"],
        "{head}"
    );
}
