//! Pingora glue: run `decide` once per request, execute its decision, log the outcome.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use async_trait::async_trait;
use http::header::HeaderValue;
use pingora::prelude::HttpPeer;
use pingora::proxy::{ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::config::{Config, Upstream};
use crate::decide::{decide, Decided, Decision, Reject, Request};
use crate::docroot::Io;
use crate::respond;

/// The proxy service: the compiled config plus what Pingora needs per upstream.
pub struct Spillway {
    config: Arc<Config>,
    /// The default upstream as a ready peer, cloned per proxied request.
    upstream: Option<(Arc<Upstream>, HttpPeer)>,
}

impl Spillway {
    pub fn new(config: Arc<Config>) -> Spillway {
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
        Spillway { config, upstream }
    }
}

/// Runs `decide` on the event loop with cached-only lookups. A path the kernel must read from
/// disk to resolve is resolved on the blocking pool instead, and the decision retried, so a cold
/// disk never stalls the other requests on this worker.
async fn decide_without_blocking<'c, 'p>(
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    // Each round warms one more path (the file, then a precompressed variant or index file).
    for _ in 0..4 {
        let decided = decide(config, request, SystemTime::now(), Io::CachedOnly);
        let Decision::Uncached(warm) = decided.decision else {
            return decided;
        };
        if tokio::task::spawn_blocking(move || warm.run())
            .await
            .is_err()
        {
            break;
        }
    }
    // A file system whose lookups never stay cached (network file systems revalidate):
    // fall back to what nginx does, a blocking lookup here.
    decide(config, request, SystemTime::now(), Io::MayBlock)
}

/// Whether `error` only means the client closed its connection.
fn client_went_away(error: &Error) -> bool {
    matches!(
        error.etype(),
        ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed
    )
}

/// What happened to a request, for the one log line it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pending,
    Served,
    Redirect,
    Presigned,
    Upstream,
    Rejected,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Pending => "pending",
            Outcome::Served => "served",
            Outcome::Redirect => "redirect",
            Outcome::Presigned => "presigned",
            Outcome::Upstream => "upstream",
            Outcome::Rejected => "rejected",
        }
    }
}

pub struct RequestCtx {
    start: Instant,
    outcome: Outcome,
    /// Why a request was rejected, for the log line.
    reason: Option<String>,
    /// Set when `fail_to_connect` already logged the failure with the upstream's name.
    connect_failed: bool,
}

#[async_trait]
impl ProxyHttp for Spillway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            start: Instant::now(),
            outcome: Outcome::Pending,
            reason: None,
            connect_failed: false,
        }
    }

    /// No downstream modules: Pingora's default adds a (disabled) compression module that still
    /// runs on every response. spillway compresses nothing on the fly; precompressed files are
    /// served as they are.
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let req = session.req_header();
        let request = Request {
            method: &req.method,
            path: req.uri.path(),
            query: req.uri.query(),
            headers: &req.headers,
        };
        let decided = decide_without_blocking(&self.config, &request).await;
        match decided.decision {
            Decision::Uncached(warm) => {
                // Only possible if the blocking retry itself failed; answer rather than guess.
                let reject = Reject::Io(std::io::Error::other(format!(
                    "lookup of {:?} did not complete",
                    warm.relative
                )));
                tracing::error!(path = %session.req_header().uri.path(), "{reject}");
                ctx.outcome = Outcome::Rejected;
                ctx.reason = Some(reject.to_string());
                respond::reject(session, &reject).await?;
                Ok(true)
            }
            Decision::Upstream(_) => {
                ctx.outcome = Outcome::Upstream;
                Ok(false)
            }
            Decision::Serve(local) => {
                ctx.outcome = Outcome::Served;
                respond::file(session, local).await?;
                Ok(true)
            }
            Decision::AddSlash(location) => {
                ctx.outcome = Outcome::Redirect;
                respond::add_slash(session, &location).await?;
                Ok(true)
            }
            Decision::Redirect(redirect) => {
                ctx.outcome = if redirect.presigned() {
                    Outcome::Presigned
                } else {
                    Outcome::Redirect
                };
                respond::redirect(session, &redirect).await?;
                Ok(true)
            }
            Decision::Reject(reject) => {
                ctx.outcome = Outcome::Rejected;
                if reject.status() >= 500 {
                    tracing::error!(path = %session.req_header().uri.path(), "{reject}");
                }
                ctx.reason = Some(reject.to_string());
                respond::reject(session, &reject).await?;
                Ok(true)
            }
        }
    }

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
        upstream_request.insert_header("x-forwarded-proto", HeaderValue::from_static("http"))?;
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
        let status = session.response_written().map_or(0, |r| r.status.as_u16());
        let req = session.req_header();
        // The path only: query strings can carry tokens, and Location (with its signature) is
        // never logged.
        tracing::info!(
            outcome = ctx.outcome.as_str(),
            status,
            method = %req.method,
            path = %req.uri.path(),
            duration_us = ctx.start.elapsed().as_micros() as u64,
            reason = ctx.reason.as_deref(),
            error = error.map(|e| e.to_string()),
            "request"
        );
    }
}
