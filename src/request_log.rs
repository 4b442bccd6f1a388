//! The one log line every request gets, whoever answered it.
//!
//! The path only: query strings can carry tokens, and `Location` (with its signature) is never
//! logged.

use std::time::Instant;

/// What happened to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Served,
    Redirect,
    Presigned,
    Upstream,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Served => "served",
            Outcome::Redirect => "redirect",
            Outcome::Presigned => "presigned",
            Outcome::Upstream => "upstream",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Everything the line says about one request.
pub struct Entry<'a> {
    pub outcome: Outcome,
    /// 0 when no response was started.
    pub status: u16,
    pub method: &'a str,
    pub path: &'a str,
    pub start: Instant,
    /// Why a request was rejected.
    pub reason: Option<&'a dyn std::fmt::Display>,
    /// What went wrong sending the answer (a client that hung up, a truncated file).
    pub error: Option<&'a dyn std::fmt::Display>,
}

pub fn record(entry: Entry) {
    tracing::info!(
        outcome = entry.outcome.as_str(),
        status = entry.status,
        method = entry.method,
        path = entry.path,
        duration_us = entry.start.elapsed().as_micros() as u64,
        reason = entry.reason.map(tracing::field::display),
        error = entry.error.map(tracing::field::display),
        "request"
    );
}
