//! Deciding a request and answering it without the upstream: the steps HTTP/1 and HTTP/2 share.

use std::fmt::Display;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Method};

use crate::config::{Config, Route};
use crate::core::answer::{Answer, Reject};
use crate::core::decide::{decide, Decided, Request};
use crate::core::outcome::Outcome;
use crate::fs::docroot::{CachedOnly, MayBlock};
use crate::s3::SignError;
use crate::server::respond::{self, Reply, Sent};
use crate::telemetry::request_log::{self, Entry};

/// Runs `decide` on the event loop with cached-only lookups. A path the kernel must read from
/// disk to resolve is resolved on the blocking pool instead, and the decision retried, so a cold
/// disk never stalls the other requests on this worker.
pub async fn decide_without_blocking<'c, 'p>(
    config: &'c Config,
    request: &Request<'p>,
) -> Decided<'c, 'p> {
    // Each round warms one more path (the file, then a precompressed variant or index file).
    for _ in 0..4 {
        let warm = match decide(config, request, SystemTime::now(), &CachedOnly) {
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
    let Ok(decided) = decide(config, request, SystemTime::now(), &MayBlock);
    decided
}

/// Sends `answer` to the request, logs it, and returns what went out.
pub async fn answer(
    reply: &mut Reply<'_>,
    (method, path, headers): (&Method, &str, &HeaderMap),
    route: Option<&Route>,
    answer: Answer<'_>,
    start: Instant,
) -> Sent {
    if let Answer::Reject(reject) = &answer {
        if reject.status().is_server_error() {
            tracing::error!(path, "{reject}");
        }
        if let (Reject::Sign(SignError::CredentialsExpiring), Some(bucket)) =
            (reject, route.and_then(|r| r.bucket.as_ref()))
        {
            bucket.credentials().request_refresh();
        }
    }
    let sent = respond::send(reply, method, headers, &answer).await;
    let reason = match &answer {
        Answer::Reject(reject) => Some(reject as &dyn Display),
        _ => None,
    };
    log(
        &sent,
        answer.outcome(sent.status),
        (method.as_str(), path),
        start,
        reason,
    );
    sent
}

/// The log line of a request answered here.
pub fn log(
    sent: &Sent,
    outcome: Outcome,
    (method, path): (&str, &str),
    start: Instant,
    reason: Option<&dyn Display>,
) {
    request_log::record(Entry {
        outcome,
        status: Some(sent.status),
        method,
        path,
        start,
        reason,
        cut_short: sent.cut_short.as_ref().map(|e| e as &dyn Display),
    });
}
