//! Each client connection: HTTP/2 (by ALPN) goes to Pingora's h2 server and `h2`; HTTP/1.x is
//! read here, one request head at a time, decided, and answered locally -- or handed to
//! Pingora's proxy.
//!
//! Files, redirects and errors are answered here, with one parse of the request head and one
//! write per response. A request for the upstream is handed to Pingora's HTTP proxy with the
//! bytes already read; when Pingora is done with it, the connection comes back here for the
//! next request. So a browser that loads a page from the legacy app and its images from disk
//! over one keep-alive connection gets both paths at full speed.

use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::BytesMut;
use http::StatusCode;
use pingora::apps::{HttpServerApp, ServerApp};
use pingora::protocols::http::ServerSession;
use pingora::protocols::{Stream, ALPN};
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;
use tokio::time::Sleep;

use crate::config::Config;
use crate::core::answer::Answer;
use crate::core::decide::{Decision, Request};
use crate::core::outcome::Outcome;
use crate::core::site::Route;
use crate::core::upstream::Upstream;
use crate::front::connections::Connections;
use crate::front::h2::H2;
use crate::front::local::{self, Asked};
use crate::http::hop_by_hop::HopByHop;
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::authorize::Authorizer;
use crate::upstream::forward::{self, Client};
use crate::upstream::proxy::Spillway;
use crate::wire::http1::{self, BodyLength, HeadError, Persistence, RequestHead, MAX_HEAD};
use crate::wire::respond::{self, Reply, Sent, To, ZeroCopy};

/// Request bodies up to this size are read and discarded after a local answer, so a rejected
/// upload does not cost the client its keep-alive connection; larger ones close it instead.
const DRAIN_LIMIT: u64 = 64 * 1024;
/// How long discarding such a body may take.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Reads are at least this large (a typical request head fits many times over).
const READ_SIZE: usize = 4096;

/// How long an idle keep-alive connection stays open once a graceful shutdown begins.
const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);

/// Header timeouts are counted, and said in the log at most this often.
const HEADER_TIMEOUT_LOG_EVERY: Duration = Duration::from_secs(10);

pub struct Front {
    config: Arc<Config>,
    proxy: Arc<HttpProxy<Spillway>>,
    h2: Arc<H2>,
    connections: Arc<Connections>,
    telemetry: Arc<Telemetry>,
    authorizer: Arc<Authorizer>,
    header_timeouts: SlowHeads,
}

impl Front {
    pub fn new(
        config: Arc<Config>,
        proxy: HttpProxy<Spillway>,
        connections: Arc<Connections>,
        telemetry: Arc<Telemetry>,
    ) -> Front {
        let proxy = Arc::new(proxy);
        let authorizer = Arc::new(Authorizer::new());
        let h2 = H2::new(
            Arc::clone(&config),
            Arc::clone(&proxy),
            Arc::clone(&telemetry),
            Arc::clone(&authorizer),
        );
        Front {
            h2: Arc::new(h2),
            config,
            proxy,
            connections,
            telemetry,
            authorizer,
            header_timeouts: SlowHeads::default(),
        }
    }
}

/// The client's address, as the connection says.
fn client_of(stream: &Stream) -> Option<std::net::IpAddr> {
    let digest = stream.get_socket_digest()?;
    Some(digest.peer_addr()?.as_inet()?.ip())
}

#[async_trait]
impl ServerApp for Front {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let h2 = stream.selected_alpn_proto() == Some(ALPN::H2);
        let Some(admitted) = self.connections.admit() else {
            if !h2 {
                Box::pin(refuse(
                    stream,
                    self.config.limits.send_timeout,
                    &self.telemetry,
                ))
                .await;
            }
            return None;
        };
        if h2 {
            let _admitted = admitted;
            return ServerApp::process_new(&self.h2, stream, shutdown).await;
        }
        // An HTTP/1 connection lives on in a task of its own, the size of what it holds while
        // idle (about 1 KiB). Pingora's task, which ends here, is sized for a TLS handshake:
        // 9 KiB for as long as the connection would have stayed in it.
        let front = Arc::clone(self);
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let _admitted = admitted;
            front.connection(stream, &shutdown).await;
        });
        None
    }

    async fn cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}

/// Answers a connection over `max_connections` with a 503 and closes it.
async fn refuse(mut stream: Stream, send_timeout: Duration, telemetry: &Telemetry) {
    let client = client_of(&stream);
    let mut out = Vec::new();
    let mut zero_copy = ZeroCopy::Unavailable;
    let mut reply = Reply::closing(&mut stream, &mut out, &mut zero_copy, send_timeout);
    let start = Instant::now();
    let cut_short = respond::error(
        &mut reply,
        StatusCode::SERVICE_UNAVAILABLE,
        Some(("Retry-After", "1")),
    )
    .await
    .err();
    let sent = Sent {
        status: StatusCode::SERVICE_UNAVAILABLE,
        cut_short,
        body_bytes: reply.body_bytes,
    };
    let reason = "max_connections open already";
    local::record_refusal(telemetry, client, start, &sent, &reason);
}

/// Why reading the next request stopped.
enum ReadEnd {
    /// The client closed, went idle too long, or the server is shutting down: close quietly.
    Closed,
    /// The client began a request head and did not finish it in time.
    SlowHead,
    /// A broken request head: answer with its status, then close.
    Bad(HeadError),
}

/// What a connection keeps between requests.
struct Connection {
    /// Bytes read and not yet consumed: the next request head, perhaps more.
    buf: Vec<u8>,
    /// Where responses are assembled.
    out: Vec<u8>,
    zero_copy: ZeroCopy,
    /// Whether the socket can be waited on without a buffer (plain TCP; TLS needs one).
    wait_unbuffered: bool,
}

impl Connection {
    /// Gets ready for the next request after one whose head was `head` bytes, followed by
    /// `body` bytes of body to discard.
    async fn next_request(
        &mut self,
        stream: &mut Stream,
        head: usize,
        body: u64,
    ) -> io::Result<()> {
        discard(stream, &mut self.buf, head, body).await?;
        // An idle connection keeps no buffers: thousands of idle keep-alive connections cost
        // little more than their sockets. Allocating them again per request is cheap.
        self.out = Vec::new();
        if self.buf.is_empty() && self.wait_unbuffered {
            self.buf = Vec::new();
        }
        Ok(())
    }
}

/// What becomes of the connection after a request.
enum Next {
    /// Read the next request.
    Request,
    /// Hand the request (these bytes of it) to the proxy.
    Upstream(BytesMut),
    /// Answer a broken request head with its status, then close.
    BadHead(HeadError),
    /// The response said `Connection: close`: close once the client has read it.
    Close,
    /// The response did not get through: drop the connection.
    Gone,
}

/// What becomes of the connection after a locally answered request.
enum After {
    /// Discard this many body bytes, then read the next request.
    KeepAlive { body: u64 },
    /// The response said `Connection: close`: close once the client has read it.
    Close,
    /// The response did not get through: drop the connection.
    Gone,
}

impl Front {
    async fn connection(&self, mut stream: Stream, shutdown: &ShutdownWatch) {
        let idle_timeout = self.config.limits.idle_timeout;
        let client = client_of(&stream);
        // Both waits live as long as the connection, so a request costs no timer or watcher
        // registration: the timer is only touched when it fires.
        let mut idle = pin!(tokio::time::sleep(idle_timeout));
        let mut stopping = pin!(shutdown_started(shutdown.clone()));
        let mut conn = Connection {
            buf: Vec::new(),
            out: Vec::new(),
            zero_copy: ZeroCopy::default(),
            wait_unbuffered: respond::plain_tcp(&stream).is_some(),
        };
        // This loop is what an idle connection holds. Everything a request needs lives in
        // `request`'s future, on the heap for as long as the request lasts: this one stays
        // small (under 1 KiB with its task).
        loop {
            let waits = Waits {
                since: tokio::time::Instant::now(),
                timeout: idle_timeout,
                idle: idle.as_mut(),
                stopping: stopping.as_mut(),
            };
            let waiting = self.connections.waiting();
            let read = read_head(&mut stream, &mut conn.buf, conn.wait_unbuffered, waits).await;
            drop(waiting);
            let next = match read {
                Ok(()) => Box::pin(self.request(&mut stream, &mut conn, client, shutdown)).await,
                Err(ReadEnd::Bad(e)) => Next::BadHead(e),
                Err(ReadEnd::SlowHead) => return self.header_timeouts.count(),
                Err(ReadEnd::Closed) => return,
            };
            match next {
                Next::Request => {}
                Next::Upstream(read) => match Box::pin(self.proxy(stream, read, shutdown)).await {
                    Some(returned) => stream = returned,
                    None => return,
                },
                Next::BadHead(e) => {
                    let send_timeout = self.config.limits.send_timeout;
                    let telemetry = &self.telemetry;
                    return Box::pin(answer_bad_head(
                        stream,
                        &mut conn.out,
                        e,
                        send_timeout,
                        (telemetry, client),
                    ))
                    .await;
                }
                Next::Close => return Box::pin(linger_close(stream)).await,
                Next::Gone => return,
            }
        }
    }

    // Long on purpose: one request's way through parse, decide and the three ways out (answered here, the short way upstream, Pingora's proxy), which share the connection's buffers.
    /// Answers the request whose complete head is in `conn.buf`, or hands it on.
    async fn request(
        &self,
        stream: &mut Stream,
        conn: &mut Connection,
        client: Option<std::net::IpAddr>,
        shutdown: &ShutdownWatch,
    ) -> Next {
        // An empty line ends every complete head: httparse cannot want more.
        http1::speak_highest_minor(&mut conn.buf);
        let head = match http1::parse_request(&conn.buf) {
            Ok(Some(head)) => head,
            Ok(None) => return Next::BadHead(HeadError::Malformed),
            Err(e) => return Next::BadHead(e),
        };
        let start = Instant::now();
        let request = Request {
            method: &head.method,
            path: head.path,
            query: head.query,
            headers: &head.headers,
        };
        let decided = crate::wire::decide::decide_without_blocking(&self.config, &request).await;
        let route = decided.route;
        let asked = Asked {
            method: &head.method,
            path: head.path,
            headers: &head.headers,
            protocol: if head.http10 { "HTTP/1.0" } else { "HTTP/1.1" },
            client,
            seen_as: self.config.site.client_ip(client, &head.headers),
            start,
            request_id: RequestId::for_request(&head.headers),
        };
        // What the client sends while the upstream is asked (a pipelined request).
        let mut early = Vec::new();
        let after = match decided.decision {
            Decision::Answer(answer) => {
                let decided = (&request, decided.relative.as_deref(), answer);
                self.answer_locally(
                    (stream, &mut conn.out, &mut conn.zero_copy),
                    &head,
                    &asked,
                    route,
                    decided,
                    shutdown,
                )
                .await
            }
            Decision::Upstream(upstream) => match forward::eligible(&head, route) {
                Some(hop) => {
                    let client = Client {
                        // From the listener the request came in on, never from the client.
                        tls: stream.get_ssl_digest().is_some(),
                        stream,
                        out: &mut conn.out,
                        address: client,
                        keep_alive: head.keep_alive && !*shutdown.borrow(),
                        send_timeout: self.config.limits.send_timeout,
                        early: &mut early,
                    };
                    self.forward(client, upstream, &head, &hop, &asked, route)
                        .await
                }
                _ => {
                    // Pingora parses the request again from these bytes (that path pays for
                    // it, the others never do). It gets this request's bytes only: what was
                    // pipelined after it stays here, for the next round.
                    let this = request_bytes(&head, conn.buf.len());
                    drop(head);
                    let read = BytesMut::from(&conn.buf[..this]);
                    conn.buf.drain(..this);
                    return Next::Upstream(read);
                }
            },
        };
        let consumed = head.len;
        drop(head);
        conn.buf.extend_from_slice(&early);
        let body = match after {
            After::KeepAlive { body } => body,
            After::Close => return Next::Close,
            After::Gone => return Next::Gone,
        };
        match conn.next_request(stream, consumed, body).await {
            Ok(()) => Next::Request,
            Err(_) => Next::Gone,
        }
    }

    /// Sends a bodyless GET or HEAD the short way upstream, relays the answer, and says whether
    /// the connection lives on.
    async fn forward(
        &self,
        mut client: Client<'_>,
        upstream: &Upstream,
        head: &RequestHead<'_>,
        hop: &HopByHop,
        asked: &Asked<'_>,
        route: Option<&Route>,
    ) -> After {
        let limits = self.config.site.limits_for(route);
        let (forwarded, limited) = match limits.admit(asked.seen_as, Instant::now()) {
            Ok(_admitted) => {
                let compress = self.config.site.compress_for(route);
                let forwarded = forward::forward(
                    (upstream, compress),
                    head,
                    hop,
                    &asked.request_id,
                    &mut client,
                    &self.telemetry,
                )
                .await;
                (forwarded, None)
            }
            Err(limited) => {
                let label = route.map_or("-", |r| r.prefix.as_str());
                self.telemetry.metrics.limited(label, &limited.to_string());
                let refused =
                    forward::refuse(&mut client, head, limited.status(), limited.retry_after());
                (refused.await, Some(limited))
            }
        };
        let sent = &forwarded.sent;
        match &limited {
            Some(limited) => asked.record(
                &self.telemetry,
                route,
                Outcome::Rejected,
                sent,
                Some(limited),
            ),
            None => asked.record(&self.telemetry, route, Outcome::Upstream, sent, None),
        }
        match (&sent.cut_short, forwarded.keep_alive) {
            (Some(_), _) => After::Gone,
            (None, true) => After::KeepAlive { body: 0 },
            (None, false) => After::Close,
        }
    }

    /// Answers a request spillway decided itself (the request, its canonical path below the
    /// route, and the decided answer), and says whether the connection lives on.
    async fn answer_locally(
        &self,
        (stream, out, zero_copy): (&mut Stream, &mut Vec<u8>, &mut ZeroCopy),
        head: &RequestHead<'_>,
        asked: &Asked<'_>,
        route: Option<&Route>,
        (request, relative, answer): (&Request<'_>, Option<&str>, Answer<'_>),
        shutdown: &ShutdownWatch,
    ) -> After {
        // A body we would have to wait for, or cannot delimit cheaply, ends the connection.
        let drain = match head.body {
            BodyLength::None => Some(0),
            BodyLength::Length(n) if n <= DRAIN_LIMIT && !head.expects_continue => Some(n),
            _ => None,
        };
        let keep_alive = head.keep_alive && drain.is_some() && !*shutdown.borrow();
        let persistence = Persistence::of(keep_alive, head.http10);
        let mut reply = Reply {
            to: To::H1 {
                stream,
                persistence,
                zero_copy,
            },
            out,
            head_only: head.method == http::Method::HEAD,
            send_timeout: self.config.limits.send_timeout,
            body_bytes: 0,
        };
        let sent = local::authorize_and_answer(
            &self.authorizer,
            &self.telemetry,
            &mut reply,
            asked,
            request,
            route,
            relative,
            answer,
        )
        .await;
        match (sent.cut_short, drain) {
            (Some(_), _) => After::Gone,
            (None, Some(body)) if keep_alive => After::KeepAlive { body },
            (None, _) => After::Close,
        }
    }

    /// Runs one request through Pingora's proxy; returns the connection if it stays open.
    async fn proxy(
        &self,
        stream: Stream,
        read: BytesMut,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut session = ServerSession::new_http1(stream);
        if let ServerSession::H1(h1) = &mut session {
            h1.set_pipelined_prefix(read);
        }
        let keepalive = match *shutdown.borrow() {
            true => None,
            false => Some(self.config.limits.idle_timeout.as_secs()),
        };
        session.set_keepalive(keepalive);
        session.set_write_timeout(Some(self.config.limits.send_timeout));
        let reused = self.proxy.process_new_http(session, shutdown).await?;
        Some(reused.consume().0)
    }
}

/// How many of the `buffered` bytes belong to this request: its head and as much of a body
/// of known length as has arrived. A chunked body's end is not known here, so it takes all.
/// (Pingora reads the rest of a body itself; bytes it reads past the end of a request make it
/// close the connection, as it does not pipeline.)
fn request_bytes(head: &RequestHead<'_>, buffered: usize) -> usize {
    let body = match head.body {
        BodyLength::None => 0,
        BodyLength::Length(n) => usize::try_from(n).unwrap_or(usize::MAX),
        BodyLength::Chunked => return buffered,
    };
    buffered.min(head.len.saturating_add(body))
}

/// Counts connections that did not finish a request head in time (a slowloris leaves this
/// trace), and says so in the log at most every `HEADER_TIMEOUT_LOG_EVERY`.
#[derive(Default)]
struct SlowHeads {
    since_logged: AtomicU64,
    last_logged: std::sync::Mutex<Option<Instant>>,
}

impl SlowHeads {
    fn count(&self) {
        self.since_logged.fetch_add(1, Ordering::Relaxed);
        let Ok(mut last) = self.last_logged.try_lock() else {
            return;
        };
        if last.is_some_and(|at| at.elapsed() < HEADER_TIMEOUT_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        let count = self.since_logged.swap(0, Ordering::Relaxed);
        tracing::warn!(
            count,
            "connections closed for sending no complete request head in time (idle_timeout)"
        );
    }
}

/// Resolves when a graceful shutdown begins.
async fn shutdown_started(mut shutdown: ShutdownWatch) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            // The server is gone; the connection will be dropped with its runtime.
            std::future::pending::<()>().await;
        }
    }
}

/// What reading the next request head may end on besides data.
struct Waits<'a, S> {
    /// The previous request ended here: the next head must be complete by `since + timeout`.
    since: tokio::time::Instant,
    timeout: Duration,
    /// A connection-long timer, moved forward only when it fires early.
    idle: Pin<&'a mut Sleep>,
    stopping: Pin<&'a mut S>,
}

/// Reads until `buf` holds a complete request head (an empty line after a request line).
async fn read_head<S: Future<Output = ()>>(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    wait_unbuffered: bool,
    mut waits: Waits<'_, S>,
) -> Result<(), ReadEnd> {
    let mut deadline = waits.since + waits.timeout;
    let mut draining = false;
    let mut scanned = 0;
    loop {
        // Empty lines before a request line are ignored (RFC 9112 §2.2).
        let blank = buf
            .iter()
            .take_while(|&&b| b == b'\r' || b == b'\n')
            .count();
        buf.drain(..blank);
        if has_head_end(&buf[scanned.min(buf.len())..]) {
            return Ok(());
        }
        if buf.len() >= MAX_HEAD {
            return Err(ReadEnd::Bad(HeadError::TooLarge));
        }
        scanned = buf.len().saturating_sub(2);
        let read = tokio::select! {
            biased;
            read = read_more(stream, buf, wait_unbuffered) => read,
            () = waits.idle.as_mut() => {
                if tokio::time::Instant::now() >= deadline {
                    return Err(match buf.is_empty() {
                        true => ReadEnd::Closed,
                        false => ReadEnd::SlowHead,
                    });
                }
                waits.idle.as_mut().reset(deadline);
                continue;
            }
            // On a graceful shutdown an idle keep-alive connection gets a last moment for a
            // request already on its way (answered with `Connection: close`), then closes: a
            // client then rarely meets a connection closing under its request.
            () = waits.stopping.as_mut(), if buf.is_empty() && !draining => {
                draining = true;
                deadline = deadline.min(tokio::time::Instant::now() + SHUTDOWN_LINGER);
                waits.idle.as_mut().reset(deadline);
                continue;
            }
        };
        // End of stream or a reset: nothing to answer to.
        if !matches!(read, Ok(n) if n > 0) {
            return Err(ReadEnd::Closed);
        }
    }
}

/// Reads what has arrived into `buf`. Without `wait_unbuffered`, or with bytes in `buf`
/// already, that is a plain read. Otherwise `buf` holds memory only while a read is tried:
/// each time the socket may be readable, it gets its 4 KiB, and gives them back if nothing was
/// there. An idle connection keeps no buffer, and a busy one pays no extra system call. (Not on
/// TLS, whose stream keeps what it decrypted ahead in the buffer it is given.)
async fn read_more(
    stream: &mut Stream,
    buf: &mut Vec<u8>,
    wait_unbuffered: bool,
) -> io::Result<usize> {
    if !(wait_unbuffered && buf.is_empty()) {
        buf.reserve(READ_SIZE);
        return stream.read_buf(buf).await;
    }
    std::future::poll_fn(|cx| {
        buf.reserve(READ_SIZE);
        // A read of a TCP stream may be dropped when it is pending: it only registers interest.
        let polled = pin!(stream.read_buf(&mut *buf)).poll(cx);
        if polled.is_pending() {
            *buf = Vec::new();
        }
        polled
    })
    .await
}

/// Whether `bytes` contains an empty line (`\n\n` or `\n\r\n`).
fn has_head_end(bytes: &[u8]) -> bool {
    bytes.iter().enumerate().any(|(i, &b)| {
        b == b'\n'
            && match bytes.get(i + 1) {
                Some(b'\n') => true,
                Some(b'\r') => bytes.get(i + 2) == Some(&b'\n'),
                _ => false,
            }
    })
}

/// Removes the request head and `body` bytes of request body from the connection, keeping any
/// pipelined request that follows.
async fn discard(stream: &mut Stream, buf: &mut Vec<u8>, head: usize, body: u64) -> io::Result<()> {
    let in_buffer = (buf.len() - head).min(usize::try_from(body).unwrap_or(usize::MAX));
    buf.drain(..head + in_buffer);
    let mut left = body - in_buffer as u64;
    if left == 0 {
        return Ok(());
    }
    let drain = async {
        // On the heap: an array here would make every connection's future 8 KiB larger.
        let mut scratch = vec![0u8; SCRATCH];
        while left > 0 {
            let want = left.min(scratch.len() as u64) as usize;
            let n = stream.read(&mut scratch[..want]).await?;
            if n == 0 {
                return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
            }
            left -= n as u64;
        }
        Ok(())
    };
    tokio::time::timeout(DRAIN_TIMEOUT, drain)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// The buffer request bytes to throw away are read into.
const SCRATCH: usize = 8192;

/// How long a closing connection may take to deliver its last response (nginx:
/// `lingering_timeout`), and how much of what the client still sends is read meanwhile.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_LIMIT: usize = 1 << 20;

/// Closes after a final response. Closing a socket with unread request bytes makes the kernel
/// send a reset, which can destroy the response still in flight; so the write side is shut
/// first and what the client still sends is read and dropped until it closes too (briefly).
async fn linger_close(mut stream: Stream) {
    if tokio::io::AsyncWriteExt::shutdown(&mut stream)
        .await
        .is_err()
    {
        return;
    }
    let linger = async {
        let mut scratch = vec![0u8; SCRATCH];
        let mut read = 0;
        while read < LINGER_LIMIT {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, linger).await;
}

/// Answers a request head that cannot be served (400, 431, 505), logs it and closes.
async fn answer_bad_head(
    mut stream: Stream,
    out: &mut Vec<u8>,
    e: HeadError,
    send_timeout: Duration,
    (telemetry, client): (&Telemetry, Option<std::net::IpAddr>),
) {
    let start = Instant::now();
    let mut zero_copy = ZeroCopy::Unavailable;
    let mut reply = Reply::closing(&mut stream, out, &mut zero_copy, send_timeout);
    let cut_short = respond::error(&mut reply, e.status(), None).await.err();
    let sent = Sent {
        status: e.status(),
        cut_short,
        body_bytes: reply.body_bytes,
    };
    local::record_refusal(telemetry, client, start, &sent, &e);
    if sent.cut_short.is_none() {
        linger_close(stream).await;
    }
}
