//! Shared black-box test fixtures for spillway's integration tests.
//!
//! Everything here talks over real sockets on 127.0.0.1. Tests run in
//! parallel, so every server gets its own OS-assigned port and its own temp
//! dir; nothing is fixed or shared. Readiness is established by polling a
//! port, never by sleeping a guessed amount of time.
//!
//! Contents:
//! - ports: [`free_port`], [`wait_for_port`]
//! - a raw HTTP/1.1 client ([`request`], [`get`], [`Conn`], [`follow`]) that
//!   sends the request target byte-for-byte as written (no URL normalisation),
//!   so tests can probe how spillway handles odd paths;
//! - [`S3Server`]: in-process s3s + s3s-fs that really verifies SigV4;
//! - [`Legacy`]: an upstream that echoes what it received;
//! - [`Spillway`]: the real binary as a child process, plus [`run_cli`].
#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tempfile::TempDir;

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// How long a server may take before its port accepts connections.
const PORT_WAIT: Duration = Duration::from_secs(10);
/// The binary is a debug build starting while other tests hog both cores, so
/// give it more slack than an in-process server needs.
const SPILLWAY_START_WAIT: Duration = Duration::from_secs(20);
/// Upper bound for any single read/write, so a hung server fails the test
/// instead of hanging the whole suite.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------

/// A port that was free a moment ago. Only for things we cannot hand a bound
/// socket to (the spillway child process); in-process servers bind port 0
/// themselves and keep the listener, which has no race at all.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local_addr").port()
}

/// Poll-connect until `port` accepts, with a short exponential backoff.
/// Panics after ~10 s.
/// Polls `done`, with backoff, until it holds; fails the test after 30 s, naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut pause = Duration::from_millis(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within 30 s");
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(100));
    }
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + PORT_WAIT;
    let mut backoff = Backoff::new();
    while !port_accepts(port) {
        assert!(
            Instant::now() < deadline,
            "nothing accepted connections on 127.0.0.1:{port} within {PORT_WAIT:?}"
        );
        backoff.wait();
    }
}

fn port_accepts(port: u16) -> bool {
    let addr = SocketAddr::from((LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// 2 ms, 4 ms, ... capped at 100 ms: fast when things are quick, cheap when not.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Self {
        Self(Duration::from_millis(2))
    }
    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1 client
// ---------------------------------------------------------------------------

/// A parsed HTTP response. Header names keep the case they had on the wire;
/// use [`Response::header`] for case-insensitive lookups.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in wire order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8, for assertions and failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection with `Connection: close`.
///
/// Sends `METHOD target HTTP/1.1` with `target` exactly as given. Adds
/// `Host: 127.0.0.1:port` unless `headers` has a Host, and `Content-Length`
/// when `body` is non-empty (unless `headers` sets Content-Length or
/// Transfer-Encoding). Panics on I/O errors or a malformed response.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target} to 127.0.0.1:{port} failed: {e}"))
}

/// [`request`] that returns I/O errors instead of panicking, for tests that
/// expect the server to drop the connection.
pub fn try_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let head = format_request(port, method, target, headers, body, true);
    exchange(
        port,
        &[head.as_slice(), body].concat(),
        method.eq_ignore_ascii_case("HEAD"),
    )
}

/// `GET target` with no extra headers.
pub fn get(port: u16, target: &str) -> Response {
    request(port, "GET", target, &[], b"")
}

/// Send completely hand-written bytes (request line, headers and all) and
/// read one response, for requests `request` cannot express (e.g. both
/// Content-Length and Transfer-Encoding). `head_request` suppresses the body
/// read as for HEAD.
pub fn send_raw(port: u16, raw: &[u8], head_request: bool) -> io::Result<Response> {
    exchange(port, raw, head_request)
}

/// Follow a redirect: request `location` (an absolute `http://` URL) with
/// `method`. Always connects to 127.0.0.1 at the URL's port (so virtual-host
/// names like `bucket.s3.localhost` work without DNS), sends the URL's
/// authority verbatim as Host, and sends path+query exactly as written.
pub fn follow(location: &str, method: &str) -> Response {
    follow_with(location, method, &[])
}

/// [`follow`] with extra request headers (e.g. Range).
pub fn follow_with(location: &str, method: &str, headers: &[(&str, &str)]) -> Response {
    let (authority, port, target) = split_url(location);
    let mut all = vec![("Host", authority)];
    all.extend_from_slice(headers);
    request(port, method, target, &all, b"")
}

/// Split `http://authority/target` into (authority, port, target). The
/// fragment is dropped because clients never send it.
fn split_url(url: &str) -> (&str, u16, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("follow: not an absolute http:// URL: {url:?}"));
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    // "[::1]:8080" and "host:8080" both end in ":port"; no port means 80.
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !p.contains(']') => p
            .parse()
            .unwrap_or_else(|_| panic!("follow: bad port in {url:?}")),
        _ => 80,
    };
    let target = match target {
        "" => "/",
        t if t.starts_with('?') => panic!("follow: query without path in {url:?}"),
        t => t,
    };
    (authority, port, target)
}

/// A persistent (keep-alive) connection: requests are sent without
/// `Connection: close` and exactly one response is read per request, so a
/// test can check the connection is still usable afterwards (which needs the
/// server to frame every response, e.g. `Content-Length: 0` on a 302).
pub struct Conn {
    port: u16,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        Conn {
            port,
            reader: BufReader::new(stream),
        }
    }

    /// Send one request and read exactly one response. Panics on errors.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_send(method, target, headers, body)
            .unwrap_or_else(|e| {
                panic!(
                    "keep-alive {method} {target} to 127.0.0.1:{} failed: {e}",
                    self.port
                )
            })
    }

    /// [`Conn::send`] returning errors, e.g. to assert the server closed the
    /// connection after a previous response.
    pub fn try_send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let head = format_request(self.port, method, target, headers, body, false);
        let stream = self.reader.get_mut();
        stream.write_all(&head)?;
        stream.write_all(body)?;
        read_response(&mut self.reader, method.eq_ignore_ascii_case("HEAD"))
            .map_err(clarify_timeout)
    }
}

/// A client socket to 127.0.0.1:`port` with the suite's I/O timeouts and `TCP_NODELAY`.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((LOCALHOST, port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn format_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn exchange(port: u16, raw: &[u8], head_request: bool) -> io::Result<Response> {
    let mut stream = connect(port)?;
    // A server may answer (413, 400, ...) and close before reading the whole
    // body; the response is still what the test wants, so only report the
    // write error if no response can be read.
    let written = stream.write_all(raw);
    let mut reader = BufReader::new(stream);
    match read_response(&mut reader, head_request) {
        Ok(resp) => Ok(resp),
        Err(read_err) => Err(written.err().unwrap_or(read_err)),
    }
    .map_err(clarify_timeout)
}

/// Read one response. Interim 1xx responses (100 Continue etc.) are skipped,
/// except 101 which is final. The body is framed by, in order: no body
/// (HEAD, 1xx, 204, 304), chunked, Content-Length, else read to EOF.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    loop {
        let status_line = read_line(r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before status line",
            )
        })?;
        let status = parse_status_line(&status_line)?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside headers",
                )
            })?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = read_chunked(r)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            resp.body = vec![0; len];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("EOF before chunk size".into()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers (ignored) up to the blank line that ends the message.
            while !read_line(r)?
                .ok_or_else(|| bad("EOF in chunked trailers".into()))?
                .is_empty()
            {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if read_line(r)?.as_deref() != Some("") {
            return Err(bad("chunk not followed by CRLF".into()));
        }
    }
}

/// One line without its CRLF (or bare LF); `None` on EOF before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse()
            .map_err(|_| bad(format!("bad status line {line:?}"))),
        _ => Err(bad(format!("bad status line {line:?}"))),
    }
}

/// A socket timeout surfaces as EAGAIN ("Resource temporarily unavailable");
/// say what actually happened.
fn clarify_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("server sent no (complete) response within {IO_TIMEOUT:?}"),
        ),
        _ => e,
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

// ---------------------------------------------------------------------------
// In-process servers (shared plumbing)
// ---------------------------------------------------------------------------

/// A hyper HTTP/1 server on its own thread with its own current-thread tokio
/// runtime, so both plain `#[test]`s and `#[tokio::test]`s can use it. The
/// listener is bound before this returns, so the port is usable at once.
/// Dropping it stops the accept loop and, with the runtime, every connection.
struct BackgroundServer {
    port: u16,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    fn start<S, B>(name: &str, listener: TcpListener, service: S) -> Self
    where
        S: hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
            > + Clone
            + Send
            + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let port = listener.local_addr().expect("local_addr").port();
        listener.set_nonblocking(true).expect("set_nonblocking");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                // A LocalSet lets connection tasks be !Send (no Send bounds
                // on the generic service and body types).
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let stream = tokio::select! {
                            _ = &mut rx => return,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue, // e.g. EMFILE under load; keep serving
                            },
                        };
                        let service = service.clone();
                        tokio::task::spawn_local(async move {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                });
            })
            .expect("spawn server thread");
        Self {
            port,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn bind_any() -> TcpListener {
    TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0")
}

// ---------------------------------------------------------------------------
// S3: s3s + s3s-fs, verifying SigV4
// ---------------------------------------------------------------------------

/// A real S3-compatible server (s3s over s3s-fs) that accepts only requests
/// signed (header or presigned SigV4) with the given key pair; unsigned
/// requests get 403 AccessDenied.
///
/// s3s-fs stores object `key` of `bucket` at `root/bucket/key` (a key's `/`
/// become directories), so [`S3Server::put_object`] writes files directly.
pub struct S3Server {
    // First field: dropped first, so the server stops before `root` is deleted.
    server: BackgroundServer,
    pub port: u16,
    pub root: TempDir,
    pub access_key: String,
    pub secret_key: String,
    /// `Some("s3.localhost:PORT")` when started with a virtual-host domain.
    pub domain: Option<String>,
}

impl S3Server {
    /// Path-style only: `http://127.0.0.1:PORT/bucket/key`.
    pub fn start(access_key: &str, secret_key: &str) -> S3Server {
        Self::start_inner(access_key, secret_key, None)
    }

    /// Also accept virtual-hosted-style requests, `Host: bucket.DOMAIN:PORT`.
    /// `domain` is given without a port (e.g. `"s3.localhost"`); the port is
    /// appended because s3s matches the Host header verbatim, port included.
    /// Path-style still works when Host is an IP (`127.0.0.1:PORT`) or
    /// exactly `DOMAIN:PORT`; any other host name is taken as a bucket name.
    pub fn start_with_domain(access_key: &str, secret_key: &str, domain: &str) -> S3Server {
        Self::start_inner(access_key, secret_key, Some(domain))
    }

    /// Path-style, and every request that `gate` matches is held until the gate opens, so a
    /// test can act while an upload is in flight.
    pub fn start_gated(access_key: &str, secret_key: &str, gate: &Gate) -> S3Server {
        Self::start_full(access_key, secret_key, None, Some(gate.clone()))
    }

    fn start_inner(access_key: &str, secret_key: &str, domain: Option<&str>) -> S3Server {
        Self::start_full(access_key, secret_key, domain, None)
    }

    /// Path-style, behind a stub that answers any request carrying an `x-amz-checksum-*`
    /// header with 400 InvalidArgument, as some S3-compatible stores did (aws-cli#9214); the
    /// rest reaches s3s-fs. `refused` counts the refusals.
    pub fn start_refusing_checksums(
        access_key: &str,
        secret_key: &str,
        refused: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) -> S3Server {
        let root = tempfile::tempdir().expect("s3 root tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s_fs::FileSystem::new");
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let s3 = builder.build();
        let stub = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
            let s3 = s3.clone();
            let refused = refused.clone();
            async move {
                let carries = req
                    .headers()
                    .keys()
                    .any(|name| name.as_str().starts_with("x-amz-checksum-"));
                if carries {
                    refused.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidArgument</Code><Message>x-amz-checksum-* headers are not supported</Message></Error>";
                    let response = http::Response::builder()
                        .status(400)
                        .header("content-type", "application/xml")
                        .body(s3s::Body::from(body.to_owned()))
                        .expect("a stub response");
                    return Ok(response);
                }
                hyper::service::Service::call(&s3, req).await
            }
        });
        let server = BackgroundServer::start("s3", listener, stub);
        S3Server {
            port,
            root,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            domain: None,
            server,
        }
    }

    fn start_full(
        access_key: &str,
        secret_key: &str,
        domain: Option<&str>,
        gate: Option<Gate>,
    ) -> S3Server {
        let root = tempfile::tempdir().expect("s3 root tempdir");
        let fs = s3s_fs::FileSystem::new(root.path()).expect("s3s_fs::FileSystem::new");
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();

        let mut builder = s3s::service::S3ServiceBuilder::new(fs);
        builder.set_auth(s3s::auth::SimpleAuth::from_single(access_key, secret_key));
        let domain = domain.map(|d| format!("{d}:{port}"));
        if let Some(d) = &domain {
            let host = s3s::host::SingleDomain::new(d)
                .unwrap_or_else(|e| panic!("bad S3 domain {d:?}: {e}"));
            builder.set_host(host);
        }
        let s3 = builder.build();
        let server = match gate {
            None => BackgroundServer::start("s3", listener, s3),
            Some(gate) => {
                let gated =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let s3 = s3.clone();
                        let gate = gate.clone();
                        async move {
                            if gate.matches(&req) {
                                gate.hold().await;
                            }
                            hyper::service::Service::call(&s3, req).await
                        }
                    });
                BackgroundServer::start("s3", listener, gated)
            }
        };
        S3Server {
            port,
            root,
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            domain,
            server,
        }
    }

    /// `http://127.0.0.1:PORT`, the path-style endpoint.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn create_bucket(&self, bucket: &str) {
        let dir = self.root.path().join(bucket);
        std::fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create bucket dir {}: {e}", dir.display()));
    }

    /// Store an object (creating its bucket). No metadata sidecar is needed:
    /// s3s-fs computes the ETag from the file, and Content-Type is then absent.
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        assert!(
            !key.is_empty()
                && !key.ends_with('/')
                && !key.split('/').any(|s| s == ".." || s == "."),
            "put_object: key {key:?} cannot be stored as a plain file by s3s-fs"
        );
        self.create_bucket(bucket);
        let path = self.root.path().join(bucket).join(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
}

/// Holds the S3 requests it matches (by method and a substring of the path and query) until
/// it is opened. Opening is for good: later matches pass at once.
#[derive(Clone)]
pub struct Gate {
    method: &'static str,
    needle: &'static str,
    held: std::sync::Arc<(std::sync::Mutex<usize>, std::sync::Condvar)>,
    open: std::sync::Arc<tokio::sync::watch::Sender<bool>>,
}

impl Gate {
    /// Matches `method` requests whose path-and-query contains `needle`.
    pub fn new(method: &'static str, needle: &'static str) -> Gate {
        Gate {
            method,
            needle,
            held: Default::default(),
            open: std::sync::Arc::new(tokio::sync::watch::channel(false).0),
        }
    }

    fn matches<B>(&self, req: &http::Request<B>) -> bool {
        req.method().as_str() == self.method
            && req
                .uri()
                .path_and_query()
                .is_some_and(|p| p.as_str().contains(self.needle))
    }

    async fn hold(&self) {
        let mut open = self.open.subscribe();
        if *open.borrow() {
            return;
        }
        {
            let (count, arrived) = &*self.held;
            *count.lock().expect("gate lock") += 1;
            arrived.notify_all();
        }
        let _ = open.wait_for(|open| *open).await;
    }

    /// Blocks until a matching request is being held (30 s at most).
    pub fn wait_held(&self) {
        let (count, arrived) = &*self.held;
        let guard = count.lock().expect("gate lock");
        let (guard, timeout) = arrived
            .wait_timeout_while(guard, IO_TIMEOUT, |n| *n == 0)
            .expect("gate lock");
        assert!(
            !timeout.timed_out() || *guard > 0,
            "no {} request matching {:?} reached the S3 server within {IO_TIMEOUT:?}",
            self.method,
            self.needle
        );
    }

    /// Lets every held and future request through.
    pub fn open(&self) {
        self.open.send_replace(true);
    }
}

/// S3-style URI encoding of an object key for a path: every byte except
/// `A-Za-z0-9-._~` and `/` becomes `%XX` (uppercase hex).
pub fn encode_key(key: &str) -> String {
    aws_encode(key, true)
}

fn aws_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SigV4 presigned URL (query-string auth, `UNSIGNED-PAYLOAD`, region
/// us-east-1) for `base` + `encoded_path`, e.g.
/// `presign("GET", "http://127.0.0.1:PORT", "/bucket/a%20b", ak, sk, 60s)`.
/// The Host that must be sent is `base`'s authority (what [`follow`] sends).
pub fn presign(
    method: &str,
    base: &str,
    encoded_path: &str,
    access_key: &str,
    secret_key: &str,
    expires_in: Duration,
) -> String {
    use aws_sigv4::http_request::{
        sign, PercentEncodingMode, SignableBody, SignableRequest, SignatureLocation, SigningParams,
        SigningSettings, UriPathNormalizationMode,
    };
    let identity = aws_credential_types::Credentials::new(
        access_key,
        secret_key,
        None,
        None,
        "spillway-tests",
    )
    .into();
    // S3 rules: the path is already encoded once and must not be re-encoded
    // or normalised; the body is not part of a presigned signature.
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(expires_in);
    let params: SigningParams = aws_sigv4::sign::v4::SigningParams::builder()
        .identity(&identity)
        .region("us-east-1")
        .name("s3")
        .time(std::time::SystemTime::now())
        .settings(settings)
        .build()
        .expect("sigv4 params")
        .into();
    let url = format!("{base}{encoded_path}");
    let signable = SignableRequest::new(
        method,
        url.as_str(),
        std::iter::empty(),
        SignableBody::UnsignedPayload,
    )
    .expect("signable request");
    let (instructions, _signature) = sign(signable, &params).expect("sign").into_parts();
    let query: Vec<String> = instructions
        .params()
        .iter()
        .map(|(k, v)| format!("{}={}", aws_encode(k, false), aws_encode(v, false)))
        .collect();
    format!("{url}?{}", query.join("&"))
}

// ---------------------------------------------------------------------------
// Legacy upstream: echoes the request
// ---------------------------------------------------------------------------

/// A plain HTTP/1.1 upstream (keep-alive on). `/big/<n>` answers `n` bytes of `x`; every
/// other request gets 200,
/// `x-legacy: 1`, and a text/plain body:
///
/// ```text
/// method: GET
/// uri: /path?query            (as received)
/// header: host: 127.0.0.1:1234  (one line per header, lowercase name)
/// body-len: N
/// body: <body, lossy UTF-8>
/// ```
///
/// Header lines follow hyper's `HeaderMap` order: first-seen order of names,
/// with repeated names' values grouped together.
pub struct Legacy {
    pub port: u16,
    server: BackgroundServer,
}

impl Legacy {
    pub fn start() -> Legacy {
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let service = hyper::service::service_fn(move |req| echo(req, port));
        let server = BackgroundServer::start("legacy", listener, service);
        Legacy { port, server }
    }
}

/// Echoes the request it got (method, URI, headers, body), saying which server answered in
/// `x-legacy-port`.
async fn echo(
    req: http::Request<hyper::body::Incoming>,
    port: u16,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    if let Some(size) = parts.uri.path().strip_prefix("/big/") {
        // A large body, for clients that stop reading.
        let size: usize = size.parse().unwrap_or(0);
        let resp = http::Response::builder()
            .status(200)
            .header("x-legacy", "1")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                size
            ])))
            .expect("big response");
        return Ok(resp);
    }
    let mut out = format!("method: {}\nuri: {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        out.push_str(&format!(
            "header: {}: {}\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push_str(&format!(
        "body-len: {}\nbody: {}\n",
        body.len(),
        String::from_utf8_lossy(&body)
    ));
    let resp = http::Response::builder()
        .status(200)
        .header("x-legacy", "1")
        .header("x-legacy-port", port)
        .header("content-type", "text/plain; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(out)))
        .expect("echo response");
    Ok(resp)
}

/// A legacy application's authorization endpoint (`/spillway/authorize`), deciding by the
/// `sid` cookie, and recording every check it is asked:
/// - `sid=alice`: 200, `sid=bob`: 403, no `sid`: 401 with `WWW-Authenticate`;
/// - `sid=guest`: 302 to `/login?next=<X-Original-URI>`; `sid=broken`: 500;
/// - `sid=slow`: 200 after 3 s.
pub struct AuthApp {
    pub port: u16,
    asked: Arc<Mutex<Vec<http::HeaderMap>>>,
    _server: BackgroundServer,
}

impl AuthApp {
    pub fn start() -> AuthApp {
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let log = Arc::clone(&log);
                async move {
                    let headers = req.headers().clone();
                    log.lock().expect("asked").push(headers.clone());
                    let cookie = headers
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let uri = headers
                        .get("x-original-uri")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let answer = http::Response::builder();
                    let resp = match (req.uri().path(), cookie) {
                        ("/spillway/authorize", c) if c.contains("sid=alice") => {
                            answer.status(200).body(String::new())
                        }
                        ("/spillway/authorize", c) if c.contains("sid=bob") => answer
                            .status(403)
                            .header("content-type", "text/plain")
                            .body("bob may not\n".to_owned()),
                        ("/spillway/authorize", c) if c.contains("sid=guest") => answer
                            .status(302)
                            .header("location", format!("/login?next={uri}"))
                            .body(String::new()),
                        ("/spillway/authorize", c) if c.contains("sid=broken") => {
                            answer.status(500).body("oops\n".to_owned())
                        }
                        ("/spillway/authorize", c) if c.contains("sid=slow") => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            answer.status(200).body(String::new())
                        }
                        ("/spillway/authorize", _) => answer
                            .status(401)
                            .header("www-authenticate", "Cookie realm=\"site\"")
                            .header("content-type", "text/plain")
                            .body("log in first\n".to_owned()),
                        _ => answer.status(404).body(String::new()),
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("auth response"))
                }
            });
        let server = BackgroundServer::start("auth", listener, service);
        AuthApp {
            port,
            asked,
            _server: server,
        }
    }

    /// The checks asked so far, oldest first: each one's headers.
    pub fn asked(&self) -> Vec<http::HeaderMap> {
        self.asked.lock().expect("asked").clone()
    }
}

// ---------------------------------------------------------------------------
// The spillway binary
// ---------------------------------------------------------------------------

const SPILLWAY_BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// A running `spillway run --config <dir>/config.yaml` child process, with
/// stdout+stderr in `<dir>/spillway.log` and `<dir>` as its working
/// directory. Killed on drop; if the test is panicking its log is printed so
/// the failure output shows what the proxy said.
pub struct Spillway {
    pub port: u16,
    child: Child,
    dir: TempDir,
    log: PathBuf,
}

impl Spillway {
    /// Start with a fixed YAML whose `listen:` line names the port, e.g. one
    /// built with a port from [`free_port`].
    pub fn start(yaml: &str) -> Spillway {
        let port = listen_port(yaml);
        Self::try_start(None, &[], None, port, |_, _| yaml.to_owned())
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Start with YAML built for a fresh free port, e.g.
    /// `Spillway::start_with(|port| format!("listen: \"127.0.0.1:{port}\"\n..."))`.
    pub fn start_with(mut make_yaml: impl FnMut(u16) -> String) -> Spillway {
        Self::start_custom(&[], |port, _| make_yaml(port))
    }

    /// Full control: extra environment variables for the child (e.g.
    /// `("RUST_LOG", "debug")`), and `make_yaml` also gets the temp dir so it
    /// can create files there and refer to them. If the chosen port is
    /// grabbed by someone else before spillway binds it, this retries with a
    /// new port (hence `FnMut`).
    pub fn start_custom(
        env: &[(&str, &str)],
        make_yaml: impl FnMut(u16, &Path) -> String,
    ) -> Spillway {
        Self::start_as(None, env, make_yaml)
    }

    /// Like `start_custom`, but when the tests run as root and `uid` is given, spillway runs as
    /// that user: root reads any file, so a permission error can only be seen without it.
    pub fn start_as(
        uid: Option<u32>,
        env: &[(&str, &str)],
        mut make_yaml: impl FnMut(u16, &Path) -> String,
    ) -> Spillway {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(uid, env, None, free_port(), &mut make_yaml) {
                Ok(s) => return s,
                Err(e) if attempt < 3 && e.contains("in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Started with its open-files soft limit at `soft` (the hard limit unchanged).
    pub fn start_with_open_files(
        soft: u64,
        make_yaml: impl FnOnce(u16, &Path) -> String,
    ) -> Spillway {
        Self::try_start(None, &[], Some(soft), free_port(), make_yaml)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_start(
        uid: Option<u32>,
        env: &[(&str, &str)],
        soft_open_files: Option<u64>,
        port: u16,
        make_yaml: impl FnOnce(u16, &Path) -> String,
    ) -> Result<Spillway, String> {
        let dir = tempfile::tempdir().expect("spillway tempdir");
        let config = dir.path().join("config.yaml");
        let uid = uid.filter(|_| running_as_root());
        let mut yaml = make_yaml(port, dir.path());
        if !yaml.contains("runtime_dir:") {
            // Its pid file and upgrade socket go with the test's own files (not /run).
            yaml.push_str(match uid {
                Some(_) => "\nruntime_dir: xdg/run\n",
                None => "\nruntime_dir: run\n",
            });
        }
        std::fs::write(&config, yaml).expect("write config.yaml");
        if uid.is_some() {
            open_up(dir.path());
        }
        let log = dir.path().join("spillway.log");
        let log_file = std::fs::File::create(&log).expect("create spillway.log");

        // An unprivileged child may not be able to reach the build's target dir (a checkout
        // under a 0700 temp dir, say), so it runs a link or copy of the binary from its own
        // opened-up dir.
        let exe = match uid {
            Some(_) => {
                let exe = dir.path().join("spillway");
                if std::fs::hard_link(SPILLWAY_BIN, &exe).is_err() {
                    std::fs::copy(SPILLWAY_BIN, &exe).expect("copy the spillway binary");
                }
                exe
            }
            None => PathBuf::from(SPILLWAY_BIN),
        };
        let mut cmd = Command::new(&exe);
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            // Plain logs, so tests can search them for messages.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(uid) = uid {
            // A directory of its own for its runtime dir, as a login session would have.
            let xdg = dir.path().join("xdg");
            std::fs::create_dir(&xdg).expect("mkdir xdg");
            std::os::unix::fs::chown(&xdg, Some(uid), Some(uid)).expect("chown xdg");
        }
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        if let Some(soft) = soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit(2), async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                    limit.rlim_cur = soft;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {SPILLWAY_BIN}: {e}"));
        let mut s = Spillway {
            port,
            child,
            dir,
            log,
        };

        let deadline = Instant::now() + SPILLWAY_START_WAIT;
        let mut backoff = Backoff::new();
        loop {
            if let Some(status) = s.child.try_wait().expect("try_wait") {
                return Err(format!(
                    "spillway exited before listening on 127.0.0.1:{port} ({status});\n--- spillway.log ---\n{}",
                    s.logs()
                ));
            }
            if process_listens_on(s.child.id(), port) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                // Drop kills it.
                return Err(format!(
                    "spillway did not listen on 127.0.0.1:{port} within {SPILLWAY_START_WAIT:?};\n--- spillway.log ---\n{}",
                    s.logs()
                ));
            }
            backoff.wait();
        }
    }

    /// Everything the child has written to stdout/stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Poll the log until it contains `needle` (10 s deadline), e.g. to wait
    /// for a reload message. Returns the log at that point.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PORT_WAIT;
        let mut backoff = Backoff::new();
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "spillway log never contained {needle:?}:\n{logs}"
            );
            backoff.wait();
        }
    }

    /// The temp dir holding config.yaml and spillway.log (also the child's
    /// working directory); tests may put files here.
    pub fn spillway_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process the pid file names (after a reload, the new one).
    pub fn serving_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime_dir().join("spillway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Where its pid file and upgrade socket are (as `try_start` sets `runtime_dir:`).
    pub fn runtime_dir(&self) -> PathBuf {
        let xdg = self.dir.path().join("xdg/run");
        if xdg.exists() {
            xdg
        } else {
            self.dir.path().join("run")
        }
    }

    /// Has the child exited (without waiting)?
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Spillway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After a reload another process serves; it goes too.
        if let Some(pid) = self.serving_pid().filter(|&pid| pid != self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if std::thread::panicking() {
            eprintln!("--- spillway.log (port {}) ---\n{}", self.port, self.logs());
        }
    }
}

/// The uid of `nobody`, for [`Spillway::start_as`].
pub const NOBODY: u32 = 65534;

pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Makes a temp dir tree readable and traversable by everyone (temp dirs are 0700), so an
/// unprivileged spillway can read its config and roots. Files made unreadable on purpose
/// afterwards stay that way.
fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() && !all[i].is_symlink() {
            if let Ok(entries) = std::fs::read_dir(&all[i]) {
                all.extend(entries.flatten().map(|e| e.path()));
            }
        }
        i += 1;
    }
    all
}

/// Does process `pid` hold a listening TCP socket on `port`? A bare connect
/// cannot tell spillway from whoever else grabbed the port after
/// [`free_port`] released it (e.g. another test's server binding port 0);
/// then spillway fails to bind and we must see that, not the other server.
/// Linux: find LISTEN sockets on the port in /proc/net/tcp{,6} and look for
/// their inodes among the process's fds.
#[cfg(target_os = "linux")]
fn process_listens_on(pid: u32, port: u16) -> bool {
    let port_suffix = format!(":{port:04X}");
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st ... inode (field 9); st 0A = LISTEN
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[1].ends_with(&port_suffix) && f[3] == "0A" {
                sockets.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

#[cfg(not(target_os = "linux"))]
fn process_listens_on(_pid: u32, port: u16) -> bool {
    port_accepts(port)
}

/// The port in the YAML's `listen: "host:port"` line.
fn listen_port(yaml: &str) -> u16 {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("listen:"))
        .filter_map(|v| v.trim().trim_matches(['"', '\'']).rsplit_once(':'))
        .find_map(|(_, p)| p.parse().ok())
        .unwrap_or_else(|| {
            panic!("Spillway::start: no `listen: \"host:port\"` line in YAML:\n{yaml}")
        })
}

/// Run the binary once (e.g. `["check", "--config", path]`) and collect its
/// output. Panics if it runs longer than 30 s so a hang fails the test.
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_cmd(args, Command::new(SPILLWAY_BIN))
}

/// [`run_cli`] with a controlled AWS environment: every inherited `AWS_*`
/// variable is removed, so the AWS provider chain sees only what `env` sets
/// (e.g. `HOME`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_EC2_METADATA_DISABLED`).
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(SPILLWAY_BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    run_cli_cmd(args, cmd)
}

fn run_cli_cmd(args: &[&str], mut cmd: Command) -> Output {
    let mut child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {SPILLWAY_BIN}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut backoff = Backoff::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spillway {args:?} still running after {IO_TIMEOUT:?}");
        }
        backoff.wait();
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}

// ---------------------------------------------------------------------------
// The whole stack: S3, legacy upstream and spillway wired together
// ---------------------------------------------------------------------------

/// The key pair the test S3 server accepts.
pub const ACCESS_KEY: &str = "AKIDSPILLWAYTEST";
pub const SECRET_KEY: &str = "spillway-test-secret";

/// A real S3 server (bucket `media`), a real legacy upstream, and spillway in front of both.
///
/// Routes (roots under `<spillway dir>/www`):
/// - `/uploads` → bucket `media`, key prefix `uploads/`, private (ttl 5m); `avatars/**` public
/// - `/forged`  → bucket `forged`: the same server, signed with a wrong secret
/// - `/static`  → no bucket (a miss is 404)
pub struct Stack {
    pub s3: S3Server,
    pub legacy: Legacy,
    pub proxy: Spillway,
    /// The TLS listener's port, with [`StackOptions::tls`].
    pub tls_port: Option<u16>,
}

pub struct StackOptions {
    /// Whether `default_upstream` is set.
    pub upstream: bool,
    /// YAML appended to the route list (indented as list items).
    pub extra_routes: &'static str,
    /// Directories to create under `www/` before spillway starts (roots of `extra_routes`).
    pub extra_roots: &'static [&'static str],
    /// Run spillway as `nobody` when the tests run as root (see [`Spillway::start_as`]).
    pub unprivileged: bool,
    /// Also listen with TLS (on [`Stack::tls_port`]) with these certificates.
    pub tls: Option<TlsFiles>,
    /// YAML added at the top level (e.g. `limits:`).
    pub extra_top: String,
}

/// A TLS listener's certificate and key files, and more for SNI.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub sni: Vec<(PathBuf, PathBuf)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        StackOptions {
            upstream: true,
            extra_routes: "",
            extra_roots: &[],
            unprivileged: false,
            tls: None,
            extra_top: String::new(),
        }
    }
}

impl Stack {
    pub fn start() -> Stack {
        Stack::start_with(StackOptions::default())
    }

    pub fn start_with(options: StackOptions) -> Stack {
        let s3 = S3Server::start(ACCESS_KEY, SECRET_KEY);
        s3.create_bucket("media");
        let legacy = Legacy::start();
        let endpoint = s3.endpoint();
        let legacy_port = legacy.port;
        let uid = options.unprivileged.then_some(NOBODY);
        let tls_port = options.tls.as_ref().map(|_| free_port());
        let proxy = Spillway::start_as(uid, &[], |port, dir| {
            let listen = match (&options.tls, tls_port) {
                (Some(tls), Some(tls_port)) => {
                    let mut sni = String::new();
                    for (cert, key) in &tls.sni {
                        sni.push_str(&format!(
                            "\n        - cert: \"{}\"\n          key: \"{}\"",
                            cert.display(),
                            key.display()
                        ));
                    }
                    let sni = if sni.is_empty() {
                        String::new()
                    } else {
                        format!("\n      sni:{sni}")
                    };
                    format!(
                        "listen:\n  - \"127.0.0.1:{port}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"{sni}\n",
                        tls.cert.display(),
                        tls.key.display()
                    )
                }
                _ => format!("listen: \"127.0.0.1:{port}\"\n"),
            };
            let roots = ["uploads/avatars", "forged", "static"];
            for sub in roots.iter().chain(options.extra_roots) {
                std::fs::create_dir_all(dir.join("www").join(sub)).expect("create www");
            }
            let upstream = if options.upstream {
                format!("upstreams:\n  legacy:\n    address: \"127.0.0.1:{legacy_port}\"\n    connect_timeout: 1s\ndefault_upstream: legacy\n")
            } else {
                String::new()
            };
            format!(
                r#"{listen}threads: 1
shutdown:
  grace_period: 10s
  timeout: 1s
{}{upstream}buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "{SECRET_KEY}"
  forged:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "not-the-secret"
routes:
  - prefix: /uploads
    root: www/uploads
    bucket: media
    key_prefix: uploads/
    access: private
    ttl: 5m
    rules:
      - match: "avatars/**"
        access: public
  - prefix: /forged
    root: www/forged
    bucket: forged
    key_prefix: uploads/
  - prefix: /static
    root: www/static
{}"#,
                options.extra_top, options.extra_routes
            )
        });
        Stack {
            s3,
            legacy,
            proxy,
            tls_port,
        }
    }

    /// Where a route's files live: `www(\"uploads\")`.
    pub fn www(&self, route: &str) -> PathBuf {
        self.proxy.spillway_dir().join("www").join(route)
    }

    /// Puts a file under a route's root, creating directories.
    pub fn put_local(&self, route: &str, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.www(route).join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write local file");
        path
    }

    pub fn port(&self) -> u16 {
        self.proxy.port
    }
}

// ---------------------------------------------------------------------------
// TLS certificates, made in the test
// ---------------------------------------------------------------------------

/// A certificate authority and a server certificate it signed for `names`, written to
/// `<dir>/<stem>.pem` and `<dir>/<stem>.key`. Returns the CA's PEM (to trust) and the files.
pub fn certificate(dir: &Path, stem: &str, names: &[&str]) -> (String, TlsFiles) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("spillway test CA {stem}"),
    );
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    let key = KeyPair::generate().expect("server key");
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    let cert = CertificateParams::new(names)
        .expect("server params")
        .signed_by(&key, &ca, &ca_key)
        .expect("server certificate");
    let cert_path = dir.join(format!("{stem}.pem"));
    let key_path = dir.join(format!("{stem}.key"));
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (
        ca.pem(),
        TlsFiles {
            cert: cert_path,
            key: key_path,
            sni: Vec::new(),
        },
    )
}

// ---------------------------------------------------------------------------
// Downloads held open
// ---------------------------------------------------------------------------

/// Bytes each of which depends on its offset, so any misplaced chunk shows.
pub fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i / 7) ^ (i % 251)) as u8).collect()
}

/// Starts a GET for `path`, reads the response head and `prefix` body bytes, and returns the
/// stream (the rest unread, so the server is held back by the full socket buffers).
pub fn start_download(
    port: u16,
    path: &str,
    prefix: usize,
) -> (std::net::TcpStream, usize, Vec<u8>) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut body = got.split_off(head_end);
    while body.len() < prefix {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0);
        body.extend_from_slice(&buf[..n]);
    }
    (stream, length, body)
}

/// Reads the rest of a download until the server closes it (or breaks it off).
pub fn read_rest(mut stream: std::net::TcpStream, mut body: Vec<u8>) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return body,
            Ok(n) => body.extend_from_slice(&buf[..n]),
        }
    }
}
