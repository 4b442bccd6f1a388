//! The short way to the upstream, for most proxied traffic: a GET or HEAD without a body goes
//! out on a pooled keep-alive connection straight from the front, and the answer goes back to
//! the client in as few writes as it takes (one, for a page that arrives in one read).
//!
//! A lean HTTP/1 client: the request head is written in one `send`, the answer head parsed in
//! place in the connection's own buffer (`wire::answer`, framed strictly), the body relayed as
//! it arrives (`wire::chunked` takes a chunked coding off), and a timer is armed only when a
//! read or write must wait. Pingora's HTTP/1 client did the same work with a header map per
//! answer, a fresh 64 KiB buffer per response, a timer per operation and a `getpeername` per
//! reused connection; this path carried 0.88 of nginx's throughput with it. Requests with a
//! body, upgrades, `Expect`, absolute-form targets and shadow routes take Pingora's `HttpProxy`
//! (`proxy.rs`).

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use http::header;
use http::{Method, StatusCode};
use pingora::protocols::Stream;
use pingora::{Error, ErrorType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::core::compress::{AnswerFacts, Choice, Compress};
use crate::core::site::Route;
use crate::core::upstream::Upstream;
use crate::http::hop_by_hop::HopByHop;
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::failure::{described, log_connect_failure, upstream_error_kind};
use crate::upstream::headers::{replaced, write_forwarding};
use crate::upstream::pool::{self, Connection, READ_BUFFER};
use crate::wire::answer::{parse_answer, AnswerBody, AnswerHead, MAX_FIELDS};
use crate::wire::chunked::Dechunker;
use crate::wire::encoder::Encoder;
use crate::wire::http1::{BodyLength, Persistence, RequestHead, ResponseHead, MAX_HEAD};
use crate::wire::respond::{self, Reply, Sent, To, ZeroCopy};

/// Body bytes gathered before they are written to the client: a page that fits goes out with
/// its head in one write, a larger body streams in pieces of about this size.
const GATHER: usize = 64 * 1024;

/// Whether `head` can take the short way (to an upstream, under `route`): with the fields
/// its `Connection` names, when they are plain (anything unusual is Pingora's proxy's to
/// refuse).
pub fn eligible(head: &RequestHead<'_>, route: Option<&Route>) -> Option<HopByHop> {
    let plain = (head.method == Method::GET || head.method == Method::HEAD)
        && head.body == BodyLength::None
        && head.target.starts_with('/')
        && !head.expects_continue
        && !head.headers.contains_key(header::UPGRADE)
        && !route.is_some_and(|r| r.shadow);
    plain.then(|| HopByHop::of_request(&head.headers)).flatten()
}

/// The client's side of one exchange.
pub struct Client<'a> {
    pub stream: &'a mut Stream,
    /// Where the response is assembled.
    pub out: &'a mut Vec<u8>,
    pub address: Option<IpAddr>,
    pub tls: bool,
    /// Whether the connection may live on after this response (the client's wish, and no
    /// shutdown under way).
    pub keep_alive: bool,
    pub send_timeout: Duration,
    /// Bytes the client sent while its answer was awaited (a pipelined request): they belong
    /// after those already read.
    pub early: &'a mut Vec<u8>,
}

/// How an exchange ended for the client.
pub struct Forwarded {
    pub sent: Sent,
    /// Whether the connection can carry the next request.
    pub keep_alive: bool,
}

/// Why an exchange failed.
enum Failure {
    /// No connection to the upstream (already logged, with its address).
    Unreachable(Box<Error>),
    /// A pooled connection the upstream had closed: nothing of an answer came, so the request
    /// may go again on another.
    Stale(Box<Error>),
    /// No response head came.
    NoAnswer(Box<Error>),
    /// An answer that cannot be relayed, before the client was sent anything: a 502.
    BadAnswer(Box<Error>),
    /// The client hung up before the answer came: the request is abandoned (nginx's 499).
    ClientGone(io::Error),
    /// Midway through the response: the client's connection can only be dropped.
    Midway {
        sent: Sent,
        upstream: Option<Box<Error>>,
    },
}

/// Pooled connections one request may find closed before it goes out on a new one.
const MOST_STALE: usize = 8;

/// Interim (1xx) answers taken before the final one; an upstream sending more is broken.
const MOST_INTERIM: usize = 8;

// Long on purpose: the exchange's outcomes side by side (sent, retried on a closed pooled connection, timed out, refused), each with its log line.
/// Sends `head` to `upstream` and its answer to the client, and counts what failed.
pub async fn forward(
    (upstream, compress): (&Upstream, Option<&Compress>),
    head: &RequestHead<'_>,
    hop: &HopByHop,
    request_id: &RequestId,
    client: &mut Client<'_>,
    telemetry: &Telemetry,
) -> Forwarded {
    let outgoing = Outgoing {
        head,
        hop,
        request_id,
        compress,
    };
    let failed = match exchange(upstream, &outgoing, client).await {
        Ok(forwarded) => return forwarded,
        Err(failure) => failure,
    };
    let error: Option<&Box<Error>> = match &failed {
        Failure::Unreachable(e)
        | Failure::Stale(e)
        | Failure::NoAnswer(e)
        | Failure::BadAnswer(e) => Some(e),
        Failure::Midway { upstream, .. } => upstream.as_ref(),
        Failure::ClientGone(_) => None,
    };
    if let Some(e) = error {
        telemetry
            .metrics
            .upstream_error(&upstream.name, upstream_error_kind(e));
    }
    match failed {
        Failure::Midway { sent, .. } => Forwarded {
            sent,
            keep_alive: false,
        },
        Failure::ClientGone(e) => Forwarded {
            sent: Sent {
                status: CLIENT_CLOSED,
                cut_short: Some(e),
                body_bytes: 0,
            },
            keep_alive: false,
        },
        Failure::Unreachable(_) => bad_gateway(client, head).await,
        Failure::NoAnswer(e) | Failure::Stale(e) => {
            let why = described(&e);
            tracing::warn!(upstream = upstream.name, "no answer from upstream: {why}");
            bad_gateway(client, head).await
        }
        Failure::BadAnswer(e) => {
            let why = described(&e);
            tracing::warn!(
                upstream = upstream.name,
                "an answer from upstream that cannot be relayed: {why}"
            );
            bad_gateway(client, head).await
        }
    }
}

/// One exchange. A pooled connection the upstream closed before answering (its keep-alive ran
/// out as the request went out) sends the request again, on the next connection: GET and HEAD
/// are safe to repeat, and nothing of an answer had come. The other idle connections to that
/// upstream are dropped then: they are older, and closed too.
async fn exchange(
    upstream: &Upstream,
    outgoing: &Outgoing<'_>,
    client: &mut Client<'_>,
) -> Result<Forwarded, Failure> {
    let mut stale = 0;
    loop {
        let connection = match pool::take(upstream) {
            Some(connection) => connection,
            None => pool::connect(upstream).await.map_err(|e| {
                log_connect_failure(upstream, &e);
                Failure::Unreachable(e)
            })?,
        };
        match relay(connection, upstream, outgoing, client).await {
            Err(Failure::Stale(e)) if stale < MOST_STALE => {
                tracing::debug!(
                    upstream = upstream.name,
                    "a pooled connection was closed: {}",
                    described(&e)
                );
                pool::forget(upstream);
                stale += 1;
            }
            done => return done,
        }
    }
}

// Long on purpose: the exchange in its order (request out, answer head in while the client may hang up, body relayed, connection pooled), each step's failure beside it.
/// Writes the request on `connection`, relays the answer, and pools the connection when the
/// answer ended cleanly and the upstream keeps it open.
async fn relay(
    mut connection: Connection,
    upstream: &Upstream,
    outgoing: &Outgoing<'_>,
    client: &mut Client<'_>,
) -> Result<Forwarded, Failure> {
    client.out.clear();
    connection.buf.clear();
    outgoing.write_to(&mut connection.buf, upstream, client.address, client.tls);
    let written = within(
        upstream.write_timeout,
        connection.stream.write_all(&connection.buf),
    )
    .await;
    if let Err(e) = written {
        let e = Error::because(ErrorType::WriteError, "while writing the request", e);
        return Err(match connection.reused {
            true => Failure::Stale(e),
            false => Failure::NoAnswer(e),
        });
    }
    connection.buf.clear();

    // A client that hangs up meanwhile (a closed tab, an abandoned long poll) ends the wait,
    // as in nginx and Pingora's proxy.
    let answer = tokio::select! {
        biased;
        answer = final_answer(&mut connection, upstream.read_timeout, outgoing, client.out, client.keep_alive) => answer?,
        gone = hung_up(client.stream, client.early) => return Err(Failure::ClientGone(gone)),
    };
    let mut sent = Sent {
        status: answer.status,
        cut_short: None,
        body_bytes: 0,
    };
    let keep_alive = client.keep_alive && answer.framing != Framing::UntilClose;
    let upstream_body = match answer.framing {
        Framing::None => None,
        _ => Some(answer.body),
    };
    let relayed = match upstream_body {
        None => Ok(connection.buf.len() == answer.len),
        Some(body) => {
            let mut relay = BodyRelay {
                connection: &mut connection,
                start: answer.len,
                read_timeout: upstream.read_timeout,
                framing: answer.framing,
                encoder: answer.encoder,
                client,
                body_bytes: &mut sent.body_bytes,
                written: false,
            };
            relay.run(body).await
        }
    };
    let written = match relayed {
        Ok(clean) => {
            answer.framing.end(client.out);
            // The upstream connection goes back to the pool before the client is written to;
            // bytes past the answer's end mean the upstream is confused: not reused.
            if clean && answer.upstream_keeps_alive {
                pool::give_back(upstream, connection);
            }
            write(client).await.map_err(BodyEnd::Client)
        }
        Err(end) => Err(end),
    };
    match written {
        Ok(()) => Ok(Forwarded { sent, keep_alive }),
        Err(BodyEnd::UpstreamFirst(e)) => Err(Failure::BadAnswer(e)),
        Err(BodyEnd::Upstream(e)) => {
            sent.cut_short = Some(io::Error::other(format!("upstream: {}", described(&e))));
            Err(Failure::Midway {
                sent,
                upstream: Some(e),
            })
        }
        Err(BodyEnd::Client(e)) => {
            sent.cut_short = Some(e);
            Err(Failure::Midway {
                sent,
                upstream: None,
            })
        }
    }
}

/// The final answer's head, already written for the client into `out`.
struct Answer {
    status: StatusCode,
    /// How the upstream delimits its body.
    body: AnswerBody,
    /// How the client's copy is delimited.
    framing: Framing,
    /// Whether the upstream's version and `Connection` let the connection be reused.
    upstream_keeps_alive: bool,
    /// Where the body starts in the connection's buffer.
    len: usize,
    /// The coding the client gets the body in, when it is compressed here.
    encoder: Option<Encoder>,
}

// Long on purpose: each way a head can fail to arrive is named as Pingora's client names it, so both upstream paths log alike.
/// Reads past interim answers to the final one, and writes its head for the client into `out`.
async fn final_answer(
    connection: &mut Connection,
    read_timeout: Duration,
    outgoing: &Outgoing<'_>,
    out: &mut Vec<u8>,
    client_keep_alive: bool,
) -> Result<Answer, Failure> {
    let head = outgoing.head;
    let broken =
        |why: String| Failure::BadAnswer(Error::explain(ErrorType::InvalidHTTPHeader, why));
    let mut start = 0;
    let mut interim = 0;
    loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let parsed = parse_answer(&connection.buf[start..], &mut slots)
            .map_err(|e| broken(e.to_string()))?;
        match parsed {
            // No upgrade was asked for: what follows would not be HTTP.
            Some(answer) if answer.status == StatusCode::SWITCHING_PROTOCOLS => {
                return Err(broken(
                    "101 Switching Protocols to a request for no upgrade".into(),
                ))
            }
            // 100 Continue and 103 Early Hints are for a client's next step; none is taken
            // here.
            Some(answer) if answer.status.is_informational() => {
                interim += 1;
                if interim > MOST_INTERIM {
                    return Err(broken("too many interim (1xx) answers".into()));
                }
                start += answer.len;
                continue;
            }
            Some(answer) => {
                let coding = coding_for(outgoing, &answer);
                let framing = Framing::of(&answer, head, coding.encoding().is_some());
                let keep_alive = client_keep_alive && framing != Framing::UntilClose;
                relay_head(
                    out,
                    &answer,
                    (framing, coding),
                    Persistence::of(keep_alive, head.http10),
                );
                let encoder = match (coding.encoding(), framing) {
                    (_, Framing::None) | (None, _) => None,
                    (Some(encoding), _) => Encoder::new(encoding).ok(),
                };
                return Ok(Answer {
                    status: answer.status,
                    body: answer.body,
                    framing,
                    upstream_keeps_alive: answer.keep_alive
                        && (framing == Framing::None || answer.body != AnswerBody::UntilClose),
                    len: start + answer.len,
                    encoder,
                });
            }
            None => {}
        }
        let already_read = connection.buf.len();
        let context =
            || format!("while reading response headers, bytes already read: {already_read}");
        // Nothing at all of an answer on a reused connection: the upstream had closed it.
        let stale = |e: Box<Error>| match connection.reused && already_read == 0 {
            true => Failure::Stale(e),
            false => Failure::NoAnswer(e),
        };
        connection.buf.reserve(READ_BUFFER / 2);
        match within(
            read_timeout,
            connection.stream.read_buf(&mut connection.buf),
        )
        .await
        {
            Ok(0) => {
                return Err(stale(Error::explain(
                    ErrorType::ConnectionClosed,
                    context(),
                )))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                return Err(Failure::NoAnswer(Error::explain(
                    ErrorType::ReadTimedout,
                    "while reading response headers",
                )))
            }
            Err(e) => return Err(stale(Error::because(ErrorType::ReadError, context(), e))),
        }
        if connection.buf.len() > start + MAX_HEAD {
            return Err(broken(format!("Response header larger than {MAX_HEAD}")));
        }
    }
}

/// Why relaying a body stopped short.
enum BodyEnd {
    /// The upstream failed before the client was sent anything.
    UpstreamFirst(Box<Error>),
    /// The upstream failed after part of the answer had gone out.
    Upstream(Box<Error>),
    /// The client went away or stopped reading.
    Client(io::Error),
}

/// An answer's body on its way from the upstream connection to the client.
struct BodyRelay<'r, 'c> {
    connection: &'r mut Connection,
    /// Where the unread body starts in the connection's buffer.
    start: usize,
    read_timeout: Duration,
    framing: Framing,
    /// The coding applied on the way, when compressing.
    encoder: Option<Encoder>,
    client: &'r mut Client<'c>,
    body_bytes: &'r mut u64,
    /// Whether part of the answer has gone to the client.
    written: bool,
}

impl BodyRelay<'_, '_> {
    /// Relays the body as it arrives; the last of it may stay in `client.out`. `Ok(clean)`:
    /// the body ended where its framing said, with nothing after it.
    async fn run(&mut self, body: AnswerBody) -> Result<bool, BodyEnd> {
        let mut dechunker = Dechunker::default();
        let mut left = match body {
            AnswerBody::Length(length) => length,
            _ => 0,
        };
        loop {
            let input = &self.connection.buf[self.start..];
            let mut sink = Sink {
                framing: self.framing,
                out: &mut *self.client.out,
                body_bytes: &mut *self.body_bytes,
                encoder: self.encoder.as_mut(),
            };
            match body {
                AnswerBody::Length(_) => {
                    let take = input.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    sink.put(&input[..take]);
                    left -= take as u64;
                    if left == 0 {
                        let clean = take == input.len();
                        self.end_coding();
                        return Ok(clean);
                    }
                }
                AnswerBody::Chunked => {
                    let taken = dechunker.feed(input, |data| sink.put(data));
                    let taken = taken.map_err(|e| {
                        self.upstream_failed(Error::explain(
                            ErrorType::InvalidHTTPHeader,
                            e.to_string(),
                        ))
                    })?;
                    if dechunker.done() {
                        let clean = taken == self.connection.buf.len() - self.start;
                        self.end_coding();
                        return Ok(clean);
                    }
                }
                AnswerBody::UntilClose => sink.put(input),
            }
            self.connection.buf.clear();
            self.start = 0;
            if self.client.out.len() >= GATHER {
                self.flush().await?;
            }
            if self.read().await? == 0 {
                return match body {
                    AnswerBody::UntilClose => {
                        self.end_coding();
                        Ok(false)
                    }
                    AnswerBody::Length(_) => Err(self.upstream_failed(Error::explain(
                        ErrorType::ConnectionClosed,
                        format!("Peer prematurely closed connection with {left} bytes of body remaining to read"),
                    ))),
                    AnswerBody::Chunked => Err(self.upstream_failed(Error::explain(
                        ErrorType::ConnectionClosed,
                        "Peer prematurely closed connection before the last chunk",
                    ))),
                };
            }
        }
    }

    /// Reads more of the body. What has arrived goes to the client before the next piece is
    /// waited for, so a page flushed early, a long poll or an event stream is never held back;
    /// what arrives together goes out together.
    async fn read(&mut self) -> Result<usize, BodyEnd> {
        self.connection.buf.reserve(READ_BUFFER);
        let mut next = pin!(self.connection.stream.read_buf(&mut self.connection.buf));
        let polled = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        let read = match polled {
            Poll::Ready(read) => read,
            Poll::Pending => {
                // What the encoder holds goes too: a page sent in parts arrives in parts.
                if let Some(encoder) = &mut self.encoder {
                    let (framing, out, body_bytes) =
                        (self.framing, &mut *self.client.out, &mut *self.body_bytes);
                    let _ = encoder.flush(|coded| {
                        framing.put(out, coded);
                        *body_bytes += coded.len() as u64;
                    });
                }
                if !self.client.out.is_empty() {
                    let sent = write(self.client).await;
                    sent.map_err(BodyEnd::Client)?;
                    self.written = true;
                }
                match tokio::time::timeout(self.read_timeout, next).await {
                    Ok(read) => read,
                    Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
                }
            }
        };
        read.map_err(|e| {
            let etype = match e.kind() {
                io::ErrorKind::TimedOut => ErrorType::ReadTimedout,
                _ => ErrorType::ReadError,
            };
            self.upstream_failed(Error::because(etype, "while reading the response body", e))
        })
    }

    /// Ends the coded stream, when compressing: its last bytes go after the body's.
    fn end_coding(&mut self) {
        if let Some(encoder) = self.encoder.take() {
            let (framing, out, body_bytes) =
                (self.framing, &mut *self.client.out, &mut *self.body_bytes);
            let _ = encoder.finish(|coded| {
                framing.put(out, coded);
                *body_bytes += coded.len() as u64;
            });
        }
    }

    async fn flush(&mut self) -> Result<(), BodyEnd> {
        write(self.client).await.map_err(BodyEnd::Client)?;
        self.written = true;
        Ok(())
    }

    fn upstream_failed(&self, e: Box<Error>) -> BodyEnd {
        match self.written {
            false => BodyEnd::UpstreamFirst(e),
            true => BodyEnd::Upstream(e),
        }
    }
}

/// Where body bytes go: through the encoder when compressing, then framed into the client's
/// buffer. (An encoder writes into a `Vec` and cannot fail on I/O; should one fail on its own,
/// the coded stream ends short and the client's decoder says so, never a wrong page.)
struct Sink<'s> {
    framing: Framing,
    out: &'s mut Vec<u8>,
    body_bytes: &'s mut u64,
    encoder: Option<&'s mut Encoder>,
}

impl Sink<'_> {
    fn put(&mut self, data: &[u8]) {
        let (framing, out, body_bytes) = (self.framing, &mut *self.out, &mut *self.body_bytes);
        let mut framed = |bytes: &[u8]| {
            framing.put(out, bytes);
            *body_bytes += bytes.len() as u64;
        };
        match &mut self.encoder {
            Some(encoder) => {
                let _ = encoder.push(data, framed);
            }
            None => framed(data),
        }
    }
}

/// What compressing does to this answer: the route's choice for it, and the encoder it needs.
fn coding_for(outgoing: &Outgoing<'_>, answer: &AnswerHead<'_, '_>) -> Choice {
    let Some(compress) = outgoing.compress else {
        return Choice::AsItIs;
    };
    let fields = answer.fields.iter().map(|f| (f.name.as_bytes(), f.value));
    compress.choose(
        &outgoing.head.headers,
        &AnswerFacts::of(answer.status, fields),
    )
}

/// Runs `io` to its end, arming the timer only when it has to wait: most writes of a request
/// head and many reads finish on their first poll.
async fn within<T>(limit: Duration, io: impl Future<Output = io::Result<T>>) -> io::Result<T> {
    let mut io = pin!(io);
    let polled = std::future::poll_fn(|cx| Poll::Ready(io.as_mut().poll(cx))).await;
    match polled {
        Poll::Ready(done) => done,
        Poll::Pending => match tokio::time::timeout(limit, io).await {
            Ok(done) => done,
            Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
        },
    }
}

/// The status logged for a request the client abandoned before its answer (nginx's).
const CLIENT_CLOSED: StatusCode = match StatusCode::from_u16(499) {
    Ok(status) => status,
    Err(_) => StatusCode::BAD_REQUEST,
};

/// Resolves when the client ends its side of the connection (or it fails). What it sends
/// before that is kept in `early`, up to a request head's size; past that it is not read.
async fn hung_up(stream: &mut Stream, early: &mut Vec<u8>) -> io::Error {
    use tokio::io::AsyncReadExt;
    while early.len() < MAX_HEAD {
        early.reserve(4096);
        match stream.read_buf(early).await {
            Ok(0) => {
                return io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "the client closed the connection before the upstream answered",
                )
            }
            Ok(_) => {}
            Err(e) => return e,
        }
    }
    std::future::pending().await
}

/// How the relayed body is delimited for the client (RFC 9112 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// HEAD, 204, 304: no body, whatever the head says about one.
    None,
    /// The upstream's `Content-Length`, passed on, and the body as it is.
    Length(u64),
    /// A body of unknown length to an HTTP/1.1 client: chunked.
    Chunked,
    /// A body of unknown length to an HTTP/1.0 client: it ends when the connection does.
    UntilClose,
}

impl Framing {
    /// `compressed`: the body is coded here, so its length is not known before it ends.
    fn of(answer: &AnswerHead<'_, '_>, head: &RequestHead<'_>, compressed: bool) -> Framing {
        let status = answer.status;
        if head.method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Framing::None;
        }
        match (answer.body, head.http10) {
            (AnswerBody::Length(length), _) if !compressed => Framing::Length(length),
            (_, false) => Framing::Chunked,
            (_, true) => Framing::UntilClose,
        }
    }

    /// Appends a piece of body.
    fn put(self, out: &mut Vec<u8>, piece: &[u8]) {
        if piece.is_empty() {
            return;
        }
        if self == Framing::Chunked {
            use std::io::Write as _;
            let _ = write!(out, "{:x}\r\n", piece.len());
            out.extend_from_slice(piece);
            out.extend_from_slice(b"\r\n");
        } else {
            out.extend_from_slice(piece);
        }
    }

    fn end(self, out: &mut Vec<u8>) {
        if self == Framing::Chunked {
            out.extend_from_slice(b"0\r\n\r\n");
        }
    }
}

/// The upstream's response head as the client gets it: its status and end-to-end fields, the
/// framing of this hop, spillway's `Date` and connection header.
fn relay_head(
    out: &mut Vec<u8>,
    answer: &AnswerHead<'_, '_>,
    (framing, coding): (Framing, Choice),
    persistence: Persistence,
) {
    let hop = HopByHop::of_fields(answer.fields.iter().map(|f| (f.name.as_bytes(), f.value)));
    let reason = (!answer.reason.is_empty()).then_some(answer.reason);
    let mut head = ResponseHead::start_with(out, answer.status, reason);
    // In the upstream's spelling of each name.
    let encoding = coding.encoding();
    for field in answer.fields {
        let name = field.name.as_bytes();
        let ours =
            name.eq_ignore_ascii_case(b"date") || name.eq_ignore_ascii_case(b"content-length");
        if ours || hop.contains_spelled(name) {
            continue;
        }
        // Another coding is another representation: its validator is weak (as nginx does).
        if encoding.is_some()
            && name.eq_ignore_ascii_case(b"etag")
            && !field.value.starts_with(b"W/")
        {
            head.header_spelled(name, [b"W/".as_slice(), field.value].concat());
            continue;
        }
        head.header_spelled(name, field.value);
    }
    if let Some(encoding) = encoding {
        head.header("Content-Encoding", encoding.token());
    }
    if coding != Choice::AsItIs {
        head.header("Vary", "Accept-Encoding");
    }
    match framing {
        Framing::Length(length) => {
            head.number("Content-Length", length);
        }
        Framing::Chunked => {
            head.header("Transfer-Encoding", "chunked");
        }
        // What the upstream said of the length a GET would get (HEAD), or of the selected
        // representation (304), stands; a 204 has none (RFC 9110 §8.6).
        Framing::None => {
            let said = answer.status != StatusCode::NO_CONTENT && encoding.is_none();
            if said && answer.body != AnswerBody::Chunked {
                if let AnswerBody::Length(length) = answer.body {
                    head.number("Content-Length", length);
                }
            }
        }
        Framing::UntilClose => {}
    }
    head.finish(persistence);
}

/// The request as the upstream gets it.
struct Outgoing<'a> {
    head: &'a RequestHead<'a>,
    hop: &'a HopByHop,
    request_id: &'a RequestId,
    /// How the answer may be compressed for the client (the route's `compress:`, or the
    /// top-level one).
    compress: Option<&'a Compress>,
}

impl Outgoing<'_> {
    /// Writes the client's request, less what only concerned the client's connection, plus
    /// what spillway knows about it, as one HTTP/1.1 head. An HTTP/1.0 client may send no
    /// `Host`; HTTP/1.1 needs one, so the upstream's own address stands in.
    fn write_to(&self, out: &mut Vec<u8>, upstream: &Upstream, client: Option<IpAddr>, tls: bool) {
        let head = self.head;
        out.extend_from_slice(head.method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(head.target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        if !head.headers.contains_key(header::HOST) {
            use std::io::Write as _;
            let _ = write!(out, "host: {}\r\n", upstream.address);
        }
        for (name, value) in head.headers.iter() {
            if !self.hop.contains(name) && !replaced(name, client) {
                out.extend_from_slice(name.as_str().as_bytes());
                out.extend_from_slice(b": ");
                out.extend_from_slice(value.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
        }
        write_forwarding(out, &head.headers, client, tls, self.request_id.as_str());
        out.extend_from_slice(b"\r\n");
    }
}

/// Writes out the assembled response and empties the buffer.
async fn write(client: &mut Client<'_>) -> io::Result<()> {
    let sent = respond::send_all(client.stream, client.out, client.send_timeout).await;
    client.out.clear();
    sent
}

/// The answer when the upstream gave none.
async fn bad_gateway(client: &mut Client<'_>, head: &RequestHead<'_>) -> Forwarded {
    refuse(client, head, StatusCode::BAD_GATEWAY, None).await
}

/// A short plain-text `status` instead of the upstream's answer (a 502, or a limit's 503).
pub async fn refuse(
    client: &mut Client<'_>,
    head: &RequestHead<'_>,
    status: StatusCode,
    extra: Option<(&'static str, &'static str)>,
) -> Forwarded {
    client.out.clear();
    let mut zero_copy = ZeroCopy::Unavailable;
    let mut reply = Reply {
        to: To::H1 {
            stream: client.stream,
            persistence: Persistence::of(client.keep_alive, head.http10),
            zero_copy: &mut zero_copy,
        },
        out: client.out,
        head_only: head.method == Method::HEAD,
        send_timeout: client.send_timeout,
        body_bytes: 0,
    };
    let cut_short = respond::error(&mut reply, status, extra).await.err();
    let keep_alive = client.keep_alive && cut_short.is_none();
    Forwarded {
        sent: Sent {
            status,
            cut_short,
            body_bytes: reply.body_bytes,
        },
        keep_alive,
    }
}
