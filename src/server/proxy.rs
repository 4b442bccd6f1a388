//! The upstream side: Pingora's HTTP proxy, for the requests `front` decided go to the legacy
//! server. Connects to the default upstream with timeouts, adds `X-Forwarded-*`, turns a refused
//! connection into a 502 with a log line naming the upstream, and logs each request.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::header::HeaderValue;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::config::{Config, Upstream};
use crate::core::outcome::Outcome;
use crate::telemetry::request_log::{self, Entry};

/// The proxy service: what Pingora needs to reach the upstream.
pub struct Spillway {
    /// The default upstream as a ready peer, cloned per proxied request.
    upstream: Option<(Arc<Upstream>, HttpPeer)>,
}

impl Spillway {
    pub fn new(config: &Config) -> Spillway {
        let upstream = config.default_upstream.clone().map(|u| {
            let mut peer = HttpPeer::new(u.address, false, String::new());
            // Pingora sets no upstream timeouts by default: a dead backend would hold
            // requests forever.
            peer.options.connection_timeout = Some(u.connect_timeout);
            peer.options.read_timeout = Some(u.read_timeout);
            peer.options.write_timeout = Some(u.write_timeout);
            peer.options.idle_timeout = Some(u.idle_timeout);
            (u, peer)
        });
        Spillway { upstream }
    }
}

/// Whether `error` only means the client closed its connection or stopped reading.
fn client_went_away(error: &Error) -> bool {
    matches!(
        error.etype(),
        ErrorType::WriteError
            | ErrorType::ReadError
            | ErrorType::ConnectionClosed
            | ErrorType::WriteTimedout
    )
}

pub struct RequestCtx {
    start: Instant,
    /// Set when `fail_to_connect` already logged the failure with the upstream's name.
    connect_failed: bool,
}

#[async_trait]
impl ProxyHttp for Spillway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            connect_failed: false,
        }
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module that still
    /// runs on every response. spillway compresses nothing on the fly; precompressed files are
    /// served as they are.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        match &self.upstream {
            Some((_, peer)) => Ok(Box::new(peer.clone())),
            None => Error::e_explain(ErrorType::InternalError, "no upstream configured"),
        }
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut pingora::http::RequestHeader,
        _ctx: &mut RequestCtx,
    ) -> Result<()> {
        if let Some(client) = session.client_addr().and_then(|a| a.as_inet()) {
            let ip = client.ip().to_string();
            let forwarded = match upstream_request.headers.get("x-forwarded-for") {
                Some(prior) => format!("{}, {ip}", String::from_utf8_lossy(prior.as_bytes())),
                None => ip,
            };
            upstream_request.insert_header("x-forwarded-for", forwarded)?;
        }
        // From the listener the request came in on, never from the client.
        let tls = session
            .digest()
            .is_some_and(|digest| digest.ssl_digest.is_some());
        let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
        upstream_request.insert_header("x-forwarded-proto", proto)?;
        Ok(())
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut RequestCtx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.connect_failed = true;
        let name = self.upstream.as_ref().map_or("?", |(u, _)| u.name.as_str());
        tracing::warn!(upstream = name, address = %peer._address, "cannot connect to upstream: {e}");
        // One upstream address: retrying it at once would only delay the 502.
        e.set_retry(false);
        e
    }

    /// Pingora logs every failed request at ERROR. A client that hung up mid-response is not
    /// an error of ours (the request line still records it), and a failed connect was already
    /// logged with the upstream's name.
    fn suppress_error_log(&self, _session: &Session, ctx: &RequestCtx, error: &Error) -> bool {
        ctx.connect_failed || client_went_away(error)
    }

    async fn logging(&self, session: &mut Session, error: Option<&Error>, ctx: &mut RequestCtx) {
        let status = session.response_written().map(|r| r.status);
        let req = session.req_header();
        request_log::record(Entry {
            outcome: Outcome::Upstream,
            status,
            method: req.method.as_str(),
            path: req.uri.path(),
            start: ctx.start,
            reason: None,
            cut_short: error.map(|e| e as &dyn std::fmt::Display),
        });
    }
}
