//! The admin listener, separate from the public one: `/metrics` (Prometheus text format),
//! `/healthz` (the process runs) and `/readyz` (it serves, and can sign the links it must).

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use http::StatusCode;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::server::ShutdownWatch;
use tokio::io::AsyncReadExt;

use crate::config::Config;
use crate::front::connections::Connections;
use crate::s3::credentials::EXPIRY_MARGIN;
use crate::telemetry::metrics::State;
use crate::telemetry::Telemetry;
use crate::wire::http1::{self, MAX_HEAD};
use crate::wire::respond::{self, Reply, ZeroCopy};

/// A scraper that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

pub struct Admin {
    pub config: Arc<Config>,
    pub telemetry: Arc<Telemetry>,
    pub connections: Arc<Connections>,
    /// Set once every listener (the admin one too) accepts and the signal handlers are in place.
    pub ready: Arc<AtomicBool>,
}

#[async_trait]
impl ServerApp for Admin {
    async fn process_new(
        self: &Arc<Self>,
        mut stream: Stream,
        _shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        let mut buf = Vec::with_capacity(1024);
        let read = tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream, &mut buf)).await;
        if !matches!(read, Ok(Ok(()))) {
            return None;
        }
        let (status, content_type, body) = match http1::parse_request(&buf) {
            Ok(Some(head))
                if head.method != http::Method::GET && head.method != http::Method::HEAD =>
            {
                (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "text/plain; charset=utf-8",
                    "GET only\n".to_owned(),
                )
            }
            Ok(Some(head)) => self.page(head.path),
            _ => (
                StatusCode::BAD_REQUEST,
                "text/plain; charset=utf-8",
                "bad request\n".to_owned(),
            ),
        };
        let head_only = buf.starts_with(b"HEAD ");
        let mut out = Vec::new();
        let mut zero_copy = ZeroCopy::Unavailable;
        let send_timeout = self.config.limits.send_timeout;
        let mut reply = Reply::closing(&mut stream, &mut out, &mut zero_copy, send_timeout);
        reply.head_only = head_only;
        let _ = respond::text(&mut reply, status, content_type, None, &body).await;
        None
    }
}

impl Admin {
    fn page(&self, path: &str) -> (StatusCode, &'static str, String) {
        const TEXT: &str = "text/plain; charset=utf-8";
        match path {
            "/metrics" => (
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.telemetry.metrics.render(&self.state()),
            ),
            "/healthz" => (StatusCode::OK, TEXT, "ok\n".to_owned()),
            "/readyz" => match self.not_ready() {
                None => (StatusCode::OK, TEXT, "ready\n".to_owned()),
                Some(why) => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    TEXT,
                    format!("not ready: {why}\n"),
                ),
            },
            _ => (
                StatusCode::NOT_FOUND,
                TEXT,
                "not found: /metrics, /healthz and /readyz are here\n".to_owned(),
            ),
        }
    }

    /// Why the server should not be sent traffic, if it should not.
    fn not_ready(&self) -> Option<String> {
        if !self.ready.load(Ordering::Acquire) {
            return Some("the listeners are not accepting yet".to_owned());
        }
        let waiting = self.config.listen.iter().find(|l| {
            l.tls
                .as_ref()
                .is_some_and(|c| c.acme.is_some() && c.is_empty())
        });
        if let Some(listener) = waiting {
            return Some(format!(
                "{} has no certificate yet: its ACME order is under way (see the log)",
                listener.address
            ));
        }
        let chain = self.config.chain_credentials.as_ref()?;
        let Some(keys) = chain.cell.current() else {
            return Some("no signing credentials".to_owned());
        };
        let expiry = keys.expiry?;
        let left = expiry.duration_since(SystemTime::now()).unwrap_or_default();
        let needed = chain.longest_ttl + EXPIRY_MARGIN;
        (left < needed).then(|| {
            format!(
                "the signing credentials expire in {}s, sooner than the longest link needs ({}s)",
                left.as_secs(),
                needed.as_secs()
            )
        })
    }

    fn state(&self) -> State {
        let mut credential_expiry = Vec::new();
        for (_, route) in self.config.site.routes.iter() {
            let Some(bucket) = &route.bucket else {
                continue;
            };
            let name = bucket.name().to_owned();
            let expiry = bucket.credentials().current().and_then(|k| k.expiry);
            if let Some(expiry) = expiry {
                if !credential_expiry.iter().any(|(b, _)| *b == name) {
                    let left = match expiry.duration_since(SystemTime::now()) {
                        Ok(left) => left.as_secs_f64(),
                        Err(past) => -past.duration().as_secs_f64(),
                    };
                    credential_expiry.push((name, left));
                }
            }
        }
        State {
            open_connections: self.connections.open(),
            idle_connections: self.connections.idle(),
            credential_expiry,
        }
    }
}

/// Reads until `buf` holds a request head.
async fn read_head(stream: &mut Stream, buf: &mut Vec<u8>) -> io::Result<()> {
    loop {
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return Ok(());
        }
        if buf.len() > MAX_HEAD {
            return Err(io::Error::other("request head too large"));
        }
        buf.reserve(1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}
