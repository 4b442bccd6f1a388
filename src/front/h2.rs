//! HTTP/2 (over TLS, chosen by ALPN): Pingora's own h2 server runs the connection (handshake,
//! streams, flow control, GOAWAY on shutdown, limits); each stream is decided by `decide` and
//! answered through the same `Reply` as HTTP/1, or proxied.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::header::HOST;
use pingora::apps::{HttpServerApp, HttpServerOptions, ReusedHttpStream};
use pingora::protocols::http::v2::server::{default_h2_options, H2Options};
use pingora::protocols::http::ServerSession;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;

use crate::config::Config;
use crate::core::decide::{Decision, Request};
use crate::front::local::{self, Asked};
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::authorize::Authorizer;
use crate::upstream::proxy::Spillway;
use crate::wire::respond::{Reply, To};

/// Streams a client may have open at once (RFC 9113 suggests at least 100).
const MAX_CONCURRENT_STREAMS: u32 = 100;

pub struct H2 {
    config: Arc<Config>,
    proxy: Arc<HttpProxy<Spillway>>,
    telemetry: Arc<Telemetry>,
    authorizer: Arc<Authorizer>,
    options: HttpServerOptions,
}

impl H2 {
    pub fn new(
        config: Arc<Config>,
        proxy: Arc<HttpProxy<Spillway>>,
        telemetry: Arc<Telemetry>,
        authorizer: Arc<Authorizer>,
    ) -> H2 {
        let mut options = HttpServerOptions::default();
        // An idle h2 connection holds its streams' state: close it as an idle HTTP/1
        // keep-alive connection would be.
        options.h2_idle_timeout = Some(config.limits.idle_timeout);
        H2 {
            config,
            proxy,
            telemetry,
            authorizer,
            options,
        }
    }
}

#[async_trait]
impl HttpServerApp for H2 {
    // Long on purpose: one stream's steps in order (head, decide, the proxy or the answer); they share the stream's borrowed session.
    async fn process_new_http(
        self: &Arc<Self>,
        mut session: ServerSession,
        shutdown: &ShutdownWatch,
    ) -> Option<ReusedHttpStream> {
        let start = Instant::now();
        let send_timeout = self.config.limits.send_timeout;
        session.set_write_timeout(Some(send_timeout));
        let head = session.req_header();
        let method = head.method.clone();
        let path = head.uri.path().to_owned();
        let query = head.uri.query().map(str::to_owned);
        let mut headers = head.headers.clone();
        // h2 names the site in `:authority`, not `Host`: an authorization check tells the
        // application which site was asked, as it does for HTTP/1.
        if let Some(authority) = head.uri.authority().filter(|_| !headers.contains_key(HOST)) {
            if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
                headers.insert(HOST, host);
            }
        }
        let request = Request {
            method: &method,
            path: &path,
            query: query.as_deref(),
            headers: &headers,
        };
        let decided = crate::wire::decide::decide_without_blocking(&self.config, &request).await;
        let answer = match decided.decision {
            Decision::Answer(answer) => answer,
            Decision::Upstream(_) => return self.proxy.process_new_http(session, shutdown).await,
        };
        let client = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map(|a| a.ip());
        let asked = Asked {
            method: &method,
            path: &path,
            headers: &headers,
            protocol: "HTTP/2.0",
            client,
            seen_as: self.config.site.client_ip(client, &headers),
            start,
            request_id: RequestId::for_request(&headers),
        };
        let mut out = Vec::new();
        let mut reply = Reply {
            to: To::Session {
                session: &mut session,
                head: None,
            },
            out: &mut out,
            head_only: method == http::Method::HEAD,
            send_timeout,
            body_bytes: 0,
        };
        local::authorize_and_answer(
            &self.authorizer,
            &self.telemetry,
            &mut reply,
            &asked,
            &request,
            decided.route,
            decided.relative.as_deref(),
            answer,
        )
        .await;
        // An h2 stream is never reused; the connection goes on with its other streams.
        None
    }

    /// Pingora's bounded defaults (64 KiB of headers, 100 streams) and h2's rapid-reset guard
    /// (20 streams reset before they are accepted, 1,024 resets of ours caused by the peer,
    /// then GOAWAY), stated here so they cannot change unnoticed.
    fn h2_options(&self) -> Option<H2Options> {
        let mut options = default_h2_options();
        options
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(Some(1024))
            .max_concurrent_reset_streams(50)
            .reset_stream_duration(Duration::from_secs(1));
        Some(options)
    }

    fn server_options(&self) -> Option<&HttpServerOptions> {
        Some(&self.options)
    }

    async fn http_cleanup(&self) {
        self.proxy.http_cleanup().await;
    }
}
