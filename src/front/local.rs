//! Answering a decided request without the upstream, and its log line: the steps HTTP/1 and
//! HTTP/2 share.

use std::fmt::Display;
use std::net::IpAddr;
use std::time::{Instant, SystemTime};

use http::{HeaderMap, Method};

use crate::core::answer::{Answer, Reject};
use crate::core::outcome::Outcome;
use crate::core::site::Route;
use crate::s3::SignError;
use crate::telemetry::access_log::Entry;
use crate::telemetry::{RequestId, Telemetry};
use crate::wire::respond::{self, Reply, Sent};

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
