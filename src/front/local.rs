//! Answering a decided request without the upstream, and its log line: the steps HTTP/1 and
//! HTTP/2 share.

use std::fmt::Display;
use std::net::IpAddr;
use std::time::Instant;

use http::{HeaderMap, Method};

use crate::core::answer::{Answer, Reject};
use crate::core::decide::Request;
use crate::core::outcome::Outcome;
use crate::core::site::Route;
use crate::s3::SignError;
use crate::telemetry::access_log::Entry;
use crate::telemetry::{RequestId, Telemetry};
use crate::upstream::authorize::{Asker, Authorizer};
use crate::wire::respond::{self, Reply, Sent};

/// Who asked what, and how: what the log line says besides the answer.
pub struct Asked<'a> {
    pub method: &'a Method,
    /// Without the query.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub protocol: &'static str,
    /// The connection's peer (what `X-Forwarded-For` gets appended).
    pub client: Option<IpAddr>,
    /// The client as the log names it: the peer, or behind `trusted_proxies:` the address they
    /// forwarded (the one per-client limits count).
    pub seen_as: Option<IpAddr>,
    pub start: Instant,
    /// Also sent to the upstream, so the two logs can be joined.
    pub request_id: RequestId,
}

impl Asked<'_> {
    /// Counts and logs the request, answered with `sent`.
    pub fn record(
        &self,
        telemetry: &Telemetry,
        route: Option<&Route>,
        outcome: Outcome,
        sent: &Sent,
        reason: Option<&dyn Display>,
    ) {
        let entry = Entry::asked(
            self.seen_as,
            self.method.as_str(),
            self.path,
            self.protocol,
            self.request_id.as_str(),
            self.start,
        )
        .headers(self.headers)
        .answered(
            route.map(|r| r.prefix.as_str()),
            outcome,
            Some(sent.status),
            sent.body_bytes,
        )
        .why(
            reason,
            sent.cut_short.as_ref().map(|e| e as &dyn Display),
            None,
        );
        telemetry.record(route, &entry);
    }
}

/// The one way a decided answer goes out, for HTTP/1 and h2 alike: the application's check,
/// when the route (or the deciding rule) has one that applies, then the answer, counted and
/// logged. `relative` is the request's canonical path below the route.
#[allow(clippy::too_many_arguments)] // one request's parts, passed as they are held
pub async fn authorize_and_answer(
    authorizer: &Authorizer,
    telemetry: &Telemetry,
    reply: &mut Reply<'_>,
    asked: &Asked<'_>,
    request: &Request<'_>,
    route: Option<&Route>,
    relative: Option<&str>,
    decided: Answer<'_>,
) -> Sent {
    let asker = Asker {
        request,
        client: asked.client,
    };
    let decided = authorizer
        .authorized(route, relative, &asker, decided)
        .await;
    answer(telemetry, reply, asked, route, decided).await
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
    let cors = route.and_then(|r| r.cors.as_ref());
    let sent = respond::send(reply, asked.method, asked.headers, &answer, cors).await;
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
    let entry = Entry::asked(client, "-", "-", "-", request_id.as_str(), start)
        .answered(None, Outcome::Rejected, Some(sent.status), sent.body_bytes)
        .why(
            Some(reason),
            sent.cut_short.as_ref().map(|e| e as &dyn Display),
            None,
        );
    telemetry.record(None, &entry);
}
