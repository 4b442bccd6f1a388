//! The one log line every request gets, whoever answered it.
//!
//! The path only: query strings can carry tokens, and `Location` (with its signature) is never
//! logged.

use std::fmt::Display;
use std::time::Instant;

use http::StatusCode;

use crate::core::outcome::Outcome;

/// Everything the line says about one request.
pub struct Entry<'a> {
    pub outcome: Outcome,
    /// The status sent; `None` when no response was started (the upstream never answered).
    pub status: Option<StatusCode>,
    pub method: &'a str,
    pub path: &'a str,
    pub start: Instant,
    /// Why a request was rejected.
    pub reason: Option<&'a dyn Display>,
    /// Why the response did not reach the client whole (a client that hung up, a truncated
    /// file, an upstream that failed mid-response).
    pub cut_short: Option<&'a dyn Display>,
}

pub fn record(entry: Entry) {
    tracing::info!(
        outcome = entry.outcome.as_str(),
        status = entry.status.map(|s| s.as_u16()),
        method = entry.method,
        path = entry.path,
        duration_us = entry.start.elapsed().as_micros() as u64,
        reason = entry.reason.map(tracing::field::display),
        cut_short = entry.cut_short.is_some().then_some(true),
        error = entry.cut_short.map(tracing::field::display),
        "request"
    );
}
