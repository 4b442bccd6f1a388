//! The short way to the upstream, for most proxied traffic: a GET or HEAD without a body goes
//! out through Pingora's HTTP/1 client and connection pool straight from the front, and the
//! answer goes back to the client in as few writes as it takes (one, for a page that arrives
//! in one read).
//!
//! Pingora still does the HTTP: it writes the request, parses the answer, reads its body by
//! length, chunks or close, and decides whether the upstream connection can be pooled. What
//! is skipped is its proxy's per-request machinery (filter phases, a second parse of the
//! request, task channels between two halves) and a `send` per response. Requests with a body,
//! upgrades, `Expect`, absolute-form targets and shadow routes take `HttpProxy` (`proxy.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use http::header;
use http::{Method, StatusCode};
use pingora::connectors::http::v1::Connector;
use pingora::http::{HeaderNameVariant, RequestHeader};
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession;
use pingora::protocols::Stream;

use crate::config::Config;
use crate::core::site::{Route, Upstream};
use crate::http::hop_by_hop::HopByHop;
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::failure::{described, log_connect_failure, upstream_error_kind};
use crate::upstream::headers::add_forwarding;
use crate::upstream::proxy::peers;
use crate::wire::http1::{BodyLength, Persistence, RequestHead, ResponseHead, MAX_HEAD};
use crate::wire::respond::{self, Reply, Sent, To, ZeroCopy};

/// Body bytes gathered before they are written to the client: a page that fits goes out with
/// its head in one write, a larger body streams in pieces of about this size.
const GATHER: usize = 64 * 1024;

pub struct Forwarder {
    /// Pingora's HTTP/1 connector, with its pool of idle upstream connections.
    connector: Connector,
    peers: BTreeMap<String, HttpPeer>,
}

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
    Unreachable(Box<pingora::Error>),
    /// No response head came: the request may be sent again when the connection was a pooled
    /// one the upstream had closed.
    NoAnswer(Box<pingora::Error>),
    /// An answer that cannot be relayed, before the client was sent anything: a 502.
    BadAnswer(Box<pingora::Error>),
    /// The client hung up before the answer came: the request is abandoned (nginx's 499).
    ClientGone(io::Error),
    /// Midway through the response: the client's connection can only be dropped.
    Midway {
        sent: Sent,
        upstream: Option<Box<pingora::Error>>,
    },
}

/// Pooled connections one request may find closed before it goes out on a new one.
const MOST_STALE: usize = 8;

/// Interim (1xx) answers taken before the final one; an upstream sending more is broken.
const MOST_INTERIM: usize = 8;

impl Forwarder {
    pub fn new(config: &Config) -> Forwarder {
        Forwarder {
            connector: Connector::new(None),
            peers: peers(config),
        }
    }

    // Long on purpose: the exchange's outcomes side by side (sent, retried on a closed pooled connection, timed out, refused), each with its log line.
    /// Sends `head` to `upstream` and its answer to the client, and counts what failed.
    pub async fn forward(
        &self,
        upstream: &Upstream,
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
        };
        let failed = match self.peers.get(&upstream.name) {
            Some(peer) => match self.exchange(peer, upstream, &outgoing, client).await {
                Ok(forwarded) => return forwarded,
                Err(failure) => failure,
            },
            // Every upstream a route or the default names has a peer.
            None => Failure::BadAnswer(pingora::Error::explain(
                pingora::ErrorType::InternalError,
                "no peer for the upstream",
            )),
        };
        let error: Option<&Box<pingora::Error>> = match &failed {
            Failure::Unreachable(e) | Failure::NoAnswer(e) | Failure::BadAnswer(e) => Some(e),
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
            Failure::NoAnswer(e) => {
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

    /// One exchange. A pooled connection the upstream closed before answering (its keep-alive
    /// ran out as the request went out) sends the request again, on the next connection: GET
    /// and HEAD are safe to repeat, and nothing of an answer had come.
    async fn exchange(
        &self,
        peer: &HttpPeer,
        upstream: &Upstream,
        outgoing: &Outgoing<'_>,
        client: &mut Client<'_>,
    ) -> Result<Forwarded, Failure> {
        let mut stale = 0;
        loop {
            let (session, reused) = self.connector.get_http_session(peer).await.map_err(|e| {
                log_connect_failure(upstream, peer, &e);
                Failure::Unreachable(e)
            })?;
            let request = outgoing.request(client).map_err(Failure::BadAnswer)?;
            match self
                .relay(session, peer, upstream, request, outgoing.head, client)
                .await
            {
                Err(Failure::NoAnswer(e)) if reused && stale < MOST_STALE && closed(&e) => {
                    tracing::debug!(
                        upstream = upstream.name,
                        "a pooled connection was closed: {e}"
                    );
                    stale += 1;
                }
                done => return done,
            }
        }
    }

    // Long on purpose: one upstream answer's framing cases side by side (length, chunked, until close, none), so the strict framing rules read as one table.
    async fn relay(
        &self,
        mut session: HttpSession,
        peer: &HttpPeer,
        upstream: &Upstream,
        request: RequestHeader,
        head: &RequestHead<'_>,
        client: &mut Client<'_>,
    ) -> Result<Forwarded, Failure> {
        client.out.clear();
        session.read_timeout = Some(upstream.read_timeout);
        session.write_timeout = Some(upstream.write_timeout);
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(Failure::NoAnswer)?;
        // A client that hangs up meanwhile (a closed tab, an abandoned long poll) ends the wait,
        // as in nginx and Pingora's proxy.
        let response = tokio::select! {
            answer = final_answer(&mut session) => answer?,
            gone = hung_up(client.stream, client.early) => return Err(Failure::ClientGone(gone)),
        };
        let status = response.status;
        let framing = Framing::of(response, head).map_err(Failure::BadAnswer)?;
        let keep_alive = client.keep_alive && framing != Framing::UntilClose;
        let persistence = Persistence::of(keep_alive, head.http10);
        relay_head(client.out, response, framing, persistence);

        let mut sent = Sent {
            status,
            cut_short: None,
            body_bytes: 0,
        };
        let relayed = match framing {
            Framing::None => Ok(()),
            _ => relay_body(&mut session, framing, client, &mut sent.body_bytes).await,
        };
        let written = match relayed {
            Ok(()) => {
                framing.end(client.out);
                // The upstream connection goes back to the pool before the client is written to.
                self.connector
                    .release_http_session(session, peer, Some(upstream.idle_timeout))
                    .await;
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
}

/// Why relaying a body stopped short.
enum BodyEnd {
    /// The upstream failed before the client was sent anything.
    UpstreamFirst(Box<pingora::Error>),
    /// The upstream failed after part of the answer had gone out.
    Upstream(Box<pingora::Error>),
    /// The client went away or stopped reading.
    Client(io::Error),
}

/// Relays the upstream's body to the client as it arrives, counting its bytes into
/// `body_bytes`; the last of it may stay in `client.out`.
async fn relay_body(
    session: &mut HttpSession,
    framing: Framing,
    client: &mut Client<'_>,
    body_bytes: &mut u64,
) -> Result<(), BodyEnd> {
    let mut written = false;
    loop {
        // What has arrived goes to the client before the next piece is waited for, so a page
        // flushed early, a long poll or an event stream is never held back; what arrives
        // together goes out together.
        let mut next = pin!(session.read_body_ref());
        let polled = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await;
        let next = match polled {
            Poll::Ready(next) => next,
            Poll::Pending => {
                if !client.out.is_empty() {
                    write(client).await.map_err(BodyEnd::Client)?;
                    written = true;
                }
                next.await
            }
        };
        let piece = match next {
            Ok(Some(piece)) => piece,
            Ok(None) => return Ok(()),
            Err(e) if !written => return Err(BodyEnd::UpstreamFirst(e)),
            Err(e) => return Err(BodyEnd::Upstream(e)),
        };
        framing.put(client.out, piece);
        *body_bytes += piece.len() as u64;
        if client.out.len() >= GATHER {
            write(client).await.map_err(BodyEnd::Client)?;
            written = true;
        }
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

/// Reads past interim answers to the final one.
async fn final_answer(
    session: &mut HttpSession,
) -> Result<&pingora::http::ResponseHeader, Failure> {
    let broken = |why: &'static str| {
        Failure::BadAnswer(pingora::Error::explain(
            pingora::ErrorType::InvalidHTTPHeader,
            why,
        ))
    };
    for _ in 0..=MOST_INTERIM {
        session.read_response().await.map_err(Failure::NoAnswer)?;
        match session.get_status() {
            // No upgrade was asked for: what follows would not be HTTP.
            Some(StatusCode::SWITCHING_PROTOCOLS) => {
                return Err(broken(
                    "101 Switching Protocols to a request for no upgrade",
                ))
            }
            // 100 Continue and 103 Early Hints are for a client's next step; none is taken
            // here.
            Some(status) if status.is_informational() => continue,
            Some(_) => {
                return session
                    .resp_header()
                    .ok_or_else(|| broken("no response head"))
            }
            None => return Err(broken("no response head")),
        }
    }
    Err(broken("too many interim (1xx) answers"))
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
    fn of(
        response: &pingora::http::ResponseHeader,
        head: &RequestHead<'_>,
    ) -> pingora::Result<Framing> {
        let status = response.status;
        if head.method == Method::HEAD
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok(Framing::None);
        }
        // Pingora read the body by `Transfer-Encoding` when both were sent (RFC 9112 §6.3).
        let length = match response.headers.get(header::TRANSFER_ENCODING) {
            // Pingora takes the chunks off; any other coding would reach the client
            // undeclared (and no browser asks for one).
            Some(coding)
                if !coding
                    .as_bytes()
                    .trim_ascii()
                    .eq_ignore_ascii_case(b"chunked") =>
            {
                return pingora::Error::e_explain(
                    pingora::ErrorType::InvalidHTTPHeader,
                    "a transfer coding other than chunked",
                )
            }
            Some(_) => None,
            None => response
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok()),
        };
        Ok(match (length, head.http10) {
            (Some(length), _) => Framing::Length(length),
            (None, false) => Framing::Chunked,
            (None, true) => Framing::UntilClose,
        })
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
    response: &pingora::http::ResponseHeader,
    framing: Framing,
    persistence: Persistence,
) {
    let hop = HopByHop::of(&response.headers);
    let mut head = ResponseHead::start_with(out, response.status, response.get_reason_phrase());
    // In the upstream's spelling of each name.
    let _ = response.map(|name, value| {
        let name = match name {
            HeaderNameVariant::Case(name) => name.as_slice(),
            HeaderNameVariant::Titled(name) => name.as_bytes(),
        };
        let ours =
            name.eq_ignore_ascii_case(b"date") || name.eq_ignore_ascii_case(b"content-length");
        if !ours && !hop.contains_spelled(name) {
            head.header_spelled(name, value);
        }
        Ok(())
    });
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
            let may_say = response.status != StatusCode::NO_CONTENT
                && !response.headers.contains_key(header::TRANSFER_ENCODING);
            if may_say {
                if let Some(length) = response.headers.get(header::CONTENT_LENGTH) {
                    head.header("Content-Length", length);
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
}

impl Outgoing<'_> {
    /// The client's request, less what only concerned the client's connection, plus what
    /// spillway knows about it.
    fn request(&self, client: &Client<'_>) -> pingora::Result<RequestHeader> {
        let head = self.head;
        let capacity = Some(head.headers.len() + 3);
        let target = head.target.as_bytes();
        let mut request = RequestHeader::build(head.method.clone(), target, capacity)?;
        for (name, value) in head.headers.iter() {
            if !self.hop.contains(name) {
                request.append_header(name.clone(), value.clone())?;
            }
        }
        add_forwarding(
            &mut request,
            client.address,
            client.tls,
            self.request_id.as_str(),
        )?;
        Ok(request)
    }
}

/// Writes out the assembled response and empties the buffer.
async fn write(client: &mut Client<'_>) -> io::Result<()> {
    let sent = respond::send_all(client.stream, client.out, client.send_timeout).await;
    client.out.clear();
    sent
}

/// Whether `error` says a pooled connection had been closed by the upstream before it
/// answered: Pingora marks those (not a slow upstream: a request that timed out is not sent
/// again); or the request could not even be written.
fn closed(error: &pingora::Error) -> bool {
    match error.retry {
        pingora::RetryType::ReusedOnly => true,
        pingora::RetryType::Decided(retry) => {
            retry || error.etype() == &pingora::ErrorType::WriteError
        }
    }
}

/// The answer when the upstream gave none.
async fn bad_gateway(client: &mut Client<'_>, head: &RequestHead<'_>) -> Forwarded {
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
    let cut_short = respond::error(&mut reply, StatusCode::BAD_GATEWAY, None)
        .await
        .err();
    let keep_alive = client.keep_alive && cut_short.is_none();
    Forwarded {
        sent: Sent {
            status: StatusCode::BAD_GATEWAY,
            cut_short,
            body_bytes: reply.body_bytes,
        },
        keep_alive,
    }
}
