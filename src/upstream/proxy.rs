//! The upstream side: Pingora's HTTP proxy, for the requests `front` decided go to the legacy
//! server. Connects to the request's upstream (its route's, else the default) with timeouts, adds `X-Forwarded-*` and
//! `X-Request-Id`, turns a refused connection into a 502 with a log line naming the upstream,
//! and counts and logs each request.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorSource, ErrorType, Result};

use crate::config::Config;
use crate::core::compress::{AnswerFacts, Choice};
use crate::core::decide::Request;
use crate::core::limits::{Admitted, Limited};
use crate::core::outcome::Outcome;
use crate::core::site::Route;
use crate::core::upstream::Upstream;
use crate::telemetry::access_log::Entry;
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::failure::{client_went_away, log_connect_failure, upstream_error_kind};
use crate::upstream::headers::add_forwarding;
use crate::wire::encoder::Encoder;
use crate::wire::respond::{self, Reply, To};

/// The proxy service: what Pingora needs to reach the upstreams.
pub struct Spillway {
    config: Arc<Config>,
    /// Every upstream a request can go to, by name, as a ready peer cloned per request.
    peers: BTreeMap<String, HttpPeer>,
    telemetry: Arc<Telemetry>,
}

impl Spillway {
    pub fn new(config: &Arc<Config>, telemetry: Arc<Telemetry>) -> Spillway {
        Spillway {
            config: Arc::clone(config),
            peers: peers(config),
            telemetry,
        }
    }
}

impl Spillway {
    /// The request's route, from its place in the table (found once, in `early_request_filter`).
    fn route(&self, ctx: &RequestCtx) -> Option<&Route> {
        ctx.route.and_then(|at| self.config.site.routes.get(at))
    }

    /// Answers the request with a short plain-text `status` through the one response writer;
    /// whether it went out whole.
    async fn answer(
        &self,
        session: &mut Session,
        status: http::StatusCode,
        extra: Option<(&'static str, &'static str)>,
    ) -> bool {
        let head_only = session.req_header().method == http::Method::HEAD;
        let mut out = Vec::new();
        let mut reply = Reply {
            to: To::Session {
                session: &mut session.downstream_session,
                head: None,
            },
            out: &mut out,
            head_only,
            send_timeout: self.config.limits.send_timeout,
            body_bytes: 0,
        };
        respond::error(&mut reply, status, extra).await.is_ok()
    }
}

/// The address of the connection a request came on (none for a Unix socket).
fn peer_ip(session: &Session) -> Option<std::net::IpAddr> {
    session
        .client_addr()
        .and_then(|a| a.as_inet())
        .map(|a| a.ip())
}

/// A ready peer for every upstream a request can go to, by name.
fn peers(config: &Config) -> BTreeMap<String, HttpPeer> {
    let used = config
        .site
        .routes
        .iter()
        .filter_map(|(_, r)| r.upstream.as_ref());
    config
        .site
        .default_upstream
        .iter()
        .chain(used)
        .map(|u| (u.name.clone(), peer(u)))
        .collect()
}

/// A ready peer for `upstream`, with its timeouts.
pub(crate) fn peer(upstream: &Upstream) -> HttpPeer {
    let mut peer = HttpPeer::new(upstream.address, false, String::new());
    // Pingora sets no upstream timeouts by default: a dead backend would hold requests forever.
    peer.options.connection_timeout = Some(upstream.connect_timeout);
    peer.options.read_timeout = Some(upstream.read_timeout);
    peer.options.write_timeout = Some(upstream.write_timeout);
    peer.options.idle_timeout = Some(upstream.idle_timeout);
    peer
}

pub struct RequestCtx {
    start: Instant,
    request_id: RequestId,
    /// The request's route (its place in the route table) and upstream (the route's, else the
    /// default), chosen once.
    route: Option<usize>,
    upstream: Option<Arc<Upstream>>,
    /// Set when `fail_to_connect` already logged the failure with the upstream's name.
    connect_failed: bool,
    /// Set when `fail_to_proxy` answered the failure itself: nothing was cut short.
    answered_failure: bool,
    /// Under a shadow route: what spillway would have done.
    would: Option<Outcome>,
    /// Counted against `max_inflight` until the request is done.
    admitted: Option<Admitted>,
    /// Refused by a limit, not sent (or no longer sent) upstream.
    limited: Option<Limited>,
    /// Request body bytes seen so far, against `max_body`.
    body_seen: u64,
    /// The client as limits count it and the log names it (behind trusted proxies, the
    /// forwarded one), worked out once in `request_filter`.
    client: Option<std::net::IpAddr>,
    /// The coding applied to the answer's body on its way, when compressing. (In a mutex only
    /// because Pingora wants its context `Sync`; one task uses it.)
    encoder: Option<std::sync::Mutex<Encoder>>,
}

#[async_trait]
impl ProxyHttp for Spillway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            request_id: RequestId::new(),
            route: None,
            upstream: None,
            connect_failed: false,
            answered_failure: false,
            would: None,
            admitted: None,
            limited: None,
            body_seen: 0,
            client: None,
            encoder: None,
        }
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module that still
    /// runs on every response. spillway compresses the application's pages with its own encoder
    /// (`response_body_filter`); precompressed files are served as they are.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let req = session.req_header();
        ctx.request_id = RequestId::for_request(&req.headers);
        let path = req.uri.path();
        ctx.route = self.config.site.routes.position(path);
        let route = self.route(ctx);
        ctx.upstream = self.config.site.upstream_for(route).cloned();
        if route.is_some_and(|r| r.shadow) {
            let request = Request {
                method: &req.method,
                path,
                query: req.uri.query(),
                headers: &req.headers,
            };
            ctx.would = Some(crate::wire::decide::would_answer(&self.config, &request).await);
        }
        Ok(())
    }

    /// The limits of the request's route (or of the default upstream): a declared body over
    /// `max_body` is refused before it is read (and before any `100 Continue`), a request over
    /// `max_inflight` at once, with `Retry-After`.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let route = self.route(ctx);
        let limits = self.config.site.limits_for(route);
        let declared = session
            .req_header()
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.trim().parse::<u64>().ok());
        let peer = peer_ip(session);
        let from = self
            .config
            .site
            .client_ip(peer, &session.req_header().headers);
        ctx.client = from;
        let checked = declared
            .map_or(Ok(()), |length| limits.body_allowed(length))
            .and_then(|()| limits.admit(from, Instant::now()));
        match checked {
            Ok(admitted) => {
                ctx.admitted = Some(admitted);
                Ok(false)
            }
            Err(limited) => {
                ctx.limited = Some(limited);
                self.answer(session, limited.status(), limited.retry_after())
                    .await;
                Ok(true)
            }
        }
    }

    /// A body sent without a length is counted as it passes: past `max_body` the request is
    /// cut off and answered 413 (if no answer has begun).
    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        _end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(piece) = body {
            ctx.body_seen += piece.len() as u64;
            let route = self.route(ctx);
            if let Err(limited) = self
                .config
                .site
                .limits_for(route)
                .body_allowed(ctx.body_seen)
            {
                ctx.limited = Some(limited);
                return Error::e_explain(
                    ErrorType::HTTPStatus(limited.status().as_u16()),
                    "the request body is larger than max_body",
                );
            }
        }
        Ok(())
    }

    /// `compress:` for pages outside the routes that take this path (HTTP/2 clients, and
    /// answers to requests with a body): the same choice as the short way's.
    async fn response_filter(
        &self,
        session: &mut Session,
        answer: &mut pingora::http::ResponseHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let route = self.route(ctx);
        let Some(compress) = self.config.site.compress_for(route) else {
            return Ok(());
        };
        let fields = answer
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().as_bytes(), value.as_bytes()));
        let facts = AnswerFacts::of(answer.status, fields);
        let choice = compress.choose(&session.req_header().headers, &facts);
        let encoding = match choice {
            Choice::AsItIs => return Ok(()),
            Choice::Vary => None,
            Choice::Encode(encoding) => {
                let head = session.req_header().method == http::Method::HEAD;
                match (head, Encoder::new(encoding)) {
                    (true, _) => Some(encoding),
                    (false, Ok(encoder)) => {
                        ctx.encoder = Some(std::sync::Mutex::new(encoder));
                        Some(encoding)
                    }
                    // No encoder: sent as it is, and said so.
                    (false, Err(_)) => None,
                }
            }
        };
        answer.append_header(http::header::VARY, "Accept-Encoding")?;
        if let Some(encoding) = encoding {
            answer.remove_header(&http::header::CONTENT_LENGTH);
            answer.insert_header(http::header::CONTENT_ENCODING, encoding.token())?;
            if let Some(etag) = answer.headers.get(http::header::ETAG).cloned() {
                if !etag.as_bytes().starts_with(b"W/") {
                    let weak = [b"W/".as_slice(), etag.as_bytes()].concat();
                    answer.insert_header(http::header::ETAG, weak)?;
                }
            }
        }
        Ok(())
    }

    /// Codes the body as it passes, when `response_filter` chose to; each piece is flushed, so
    /// what the upstream sent in parts arrives in parts.
    fn response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<bytes::Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        let Some(encoder) = &ctx.encoder else {
            return Ok(None);
        };
        let mut coded = Vec::new();
        {
            let mut encoder = encoder.lock().unwrap_or_else(|e| e.into_inner());
            let mut put = |bytes: &[u8]| coded.extend_from_slice(bytes);
            // Into a Vec: the encoders do not fail on I/O.
            if let Some(piece) = body.as_ref() {
                let _ = encoder.push(piece, &mut put);
            }
            if !end_of_stream {
                let _ = encoder.flush(&mut put);
            }
        }
        if end_of_stream {
            if let Some(encoder) = ctx.encoder.take() {
                let encoder = encoder.into_inner().unwrap_or_else(|e| e.into_inner());
                let _ = encoder.finish(|bytes| coded.extend_from_slice(bytes));
            }
        }
        *body = Some(bytes::Bytes::from(coded));
        Ok(None)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match ctx.upstream.as_ref().and_then(|u| self.peers.get(&u.name)) {
            Some(peer) => Ok(Box::new(peer.clone())),
            None => Error::e_explain(ErrorType::InternalError, "no upstream configured"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let client = peer_ip(session);
        let tls = session
            .digest()
            .is_some_and(|digest| digest.ssl_digest.is_some());
        add_forwarding(upstream_request, client, tls, ctx.request_id.as_str())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        _peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failed = true;
        if let Some(upstream) = &ctx.upstream {
            log_connect_failure(upstream, &e);
        }
        // One upstream address: retrying it at once would only delay the 502.
        e.set_retry(false);
        e
    }

    /// The answer to a request that could not be relayed: the one a refused or silent upstream
    /// gets on the short way too (`502 Bad Gateway`, plain text, through the one response
    /// writer), not Pingora's own (an empty body with `Server: Pingora`). A response already
    /// under way is left as it is: the connection closes.
    async fn fail_to_proxy(
        &self,
        session: &mut Session,
        e: &Error,
        ctx: &mut RequestCtx,
    ) -> FailToProxy {
        let code = match (e.etype(), e.esource()) {
            (ErrorType::HTTPStatus(code), _) => *code,
            (_, ErrorSource::Upstream) => 502,
            _ if client_went_away(e) => 0,
            (_, ErrorSource::Downstream) => 400,
            _ => 500,
        };
        let status = http::StatusCode::from_u16(code).ok();
        if let (Some(status), None) = (status, session.response_written()) {
            ctx.answered_failure = self.answer(session, status, None).await;
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    /// Pingora logs every failed request at ERROR. A client that hung up mid-response is not
    /// an error of ours (the request line still records it), and a failed connect was already
    /// logged with the upstream's name.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        ctx.connect_failed || client_went_away(error)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        if let Some(error) = error.filter(|e| *e.esource() == ErrorSource::Upstream) {
            let name = ctx.upstream.as_ref().map_or("-", |u| u.name.as_str());
            self.telemetry
                .metrics
                .upstream_error(name, upstream_error_kind(error));
        }
        let status = session.response_written().map(|r| r.status);
        // A failure answered with a whole 502 cut nothing short.
        let cut_short = error
            .filter(|_| !ctx.answered_failure)
            .map(|e| e as &dyn std::fmt::Display);
        let req = session.req_header();
        let route = self.route(ctx);
        let protocol = match req.version {
            http::Version::HTTP_2 => "HTTP/2.0",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        };
        // The client as per-client limits count it (behind trusted proxies, the forwarded one);
        // worked out here only for a request that ended before `request_filter`.
        let client = ctx
            .client
            .or_else(|| self.config.site.client_ip(peer_ip(session), &req.headers));
        let outcome = match ctx.limited {
            Some(_) => Outcome::Rejected,
            None => Outcome::Upstream,
        };
        let reason = ctx.limited.as_ref().map(|l| l as &dyn std::fmt::Display);
        // Counted before the line is logged, so whoever reads the line finds the counts.
        if let Some(limited) = ctx.limited {
            let label = route.map_or("-", |r| r.prefix.as_str());
            self.telemetry.metrics.limited(label, &limited.to_string());
        }
        if let (Some(would), Some(route)) = (ctx.would, route) {
            self.telemetry.metrics.shadow(&route.prefix, would, status);
        }
        let entry = Entry::asked(
            client,
            req.method.as_str(),
            req.uri.path(),
            protocol,
            ctx.request_id.as_str(),
            ctx.start,
        )
        .headers(&req.headers)
        .answered(
            route.map(|r| r.prefix.as_str()),
            outcome,
            status,
            session.body_bytes_sent() as u64,
        )
        .why(reason, cut_short, ctx.would);
        self.telemetry.record(route, &entry);
    }
}
