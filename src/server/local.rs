//! Deciding a request and answering it without the upstream: the steps HTTP/1 and HTTP/2 share.

use std::fmt::Display;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Method};

use crate::config::Config;
use crate::core::site::Route;
use crate::core::answer::{Answer, Reject};
use crate::core::decide::{decide_as, Decided, Decision, Request, Shadow};
use crate::core::outcome::Outcome;
use crate::fs::docroot::{CachedOnly, MayBlock};
use crate::s3::SignError;
use crate::server::respond::{self, Reply, Sent};
use crate::telemetry::access_log::Entry;
use crate::telemetry::{RequestId, Telemetry};

/// Runs `decide` on the event loop with cached-only lookups. A path the kernel must read from
/// disk to resolve is resolved on the blocking pool instead, and the decision retried, so a cold
/// disk never stalls the other requests on this worker.
pub async fn decide_without_blocking<'c, 'p>(
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    decide_as_without_blocking(Shadow::Honour, config, request).await
}

/// Under a shadow route: what spillway would have answered, had it been live (it is never
/// sent: the upstream answers).
pub async fn would_answer(config: &Config, request: &Request<'_>) -> Outcome {
    let decided = decide_as_without_blocking(Shadow::AsIfLive, config, request).await;
    match decided.decision {
        Decision::Answer(Answer::Serve(local)) => {
            let status =
                crate::http::file::plan(request.method, request.headers, &local.meta).status;
            Answer::Serve(local).outcome(status)
        }
        Decision::Answer(answer) => answer.outcome(http::StatusCode::OK),
        Decision::Upstream(_) => Outcome::Upstream,
    }
}

async fn decide_as_without_blocking<'c, 'p>(
    shadow: Shadow,
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    // Each round warms one more path (the file, then a precompressed variant or index file).
    for _ in 0..4 {
        let warm = match decide_as(shadow, &config.site, request, SystemTime::now(), &CachedOnly) {
            Ok(decided) => return decided,
            Err(warm) => warm,
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
    let Ok(decided) = decide_as(shadow, &config.site, request, SystemTime::now(), &MayBlock);
    decided
}

/// Who asked what, and how: what the log line says besides the answer.
pub struct Asked<'a> {
    pub method: &'a Method,
    /// Without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub protocol: &'static str,
    pub client: Option<IpAddr>,
    pub start: Instant,
    /// Also sent to the upstream, so the two logs can be joined.
    pub request_id: RequestId,
}

impl Asked<'_> {
    fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Counts and logs the request, answered with `sent`.
    pub fn record(
        &self,
        telemetry: &Telemetry,
        route: Option<&Route>,
        outcome: Outcome,
        sent: &Sent,
        reason: Option<&dyn Display>,
    ) {
        telemetry.record(
            route,
            &Entry {
                time: SystemTime::now(),
                client: self.client,
                method: self.method.as_str(),
                path: self.path,
                protocol: self.protocol,
                outcome,
                status: Some(sent.status),
                body_bytes: sent.body_bytes,
                duration: self.start.elapsed(),
                route: route.map(|r| r.prefix.as_str()),
                user_agent: self.header(http::header::USER_AGENT),
                referer: self.header(http::header::REFERER),
                request_id: self.request_id.as_str(),
                reason,
                cut_short: sent.cut_short.as_ref().map(|e| e as &dyn Display),
                would: None,
            },
        );
    }
}

/// Sends `answer` to the request, counts and logs it, and returns what went out.
pub async fn answer(
    telemetry: &Telemetry,
    reply: &mut Reply<'_>,
    asked: &Asked<'_>,
    route: Option<&Route>,
    answer: Answer<'_>,
) -> Sent {
    if let Answer::Reject(reject) = &answer {
        if reject.status().is_server_error() {
            tracing::error!(path = asked.path, "{reject}");
        }
        if let (Reject::Sign(SignError::CredentialsExpiring), Some(bucket)) =
            (reject, route.and_then(|r| r.bucket.as_ref()))
        {
            bucket.credentials().request_refresh();
        }
    }
    let sent = respond::send(reply, asked.method, asked.headers, &answer).await;
    let reason = match &answer {
        Answer::Reject(reject) => Some(reject as &dyn Display),
        _ => None,
    };
    asked.record(telemetry, route, answer.outcome(sent.status), &sent, reason);
    sent
}

/// Counts and logs what was answered without a request to speak of (a broken head, a
/// connection over the limit).
pub fn record_refusal(
    telemetry: &Telemetry,
    client: Option<IpAddr>,
    start: Instant,
    sent: &Sent,
    reason: &dyn Display,
) {
    let request_id = RequestId::new();
    telemetry.record(
        None,
        &Entry {
            time: SystemTime::now(),
            client,
            method: "-",
            path: "-",
            protocol: "-",
            outcome: Outcome::Rejected,
            status: Some(sent.status),
            body_bytes: sent.body_bytes,
            duration: start.elapsed(),
            route: None,
            user_agent: None,
            referer: None,
            request_id: request_id.as_str(),
            reason: Some(reason),
            cut_short: sent.cut_short.as_ref().map(|e| e as &dyn Display),
            would: None,
        },
    );
}
