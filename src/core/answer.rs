//! What spillway answers a request with, as values: the server writes them, `explain` prints
//! them, and nothing here does I/O.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderValue, StatusCode};

use crate::core::authorize::{AppliesTo, Authorize, Denial};
use crate::core::cors::Preflight;
use crate::core::outcome::Outcome;
use crate::core::path::PathError;
use crate::core::policy::{Access, Verdict};
use crate::core::site::Route;
use crate::http::negotiate::Encoding;
use crate::s3::SignError;

/// An answer spillway gives itself, without the upstream.
#[derive(Debug)]
pub enum Answer<'c> {
    /// A local file: 200, 206, 304, 412 or 416, as its headers decide.
    Serve(LocalFile<'c>),
    /// `301` to the directory's path with a trailing slash (a relative `Location`).
    AddSlash(String),
    /// `302` to the object in its bucket.
    Redirect(Redirect),
    /// An error status and no further work.
    Reject(Reject),
    /// The application's "no" to an authorization check, as it gave it.
    Denied(Arc<Denial>),
    /// `204` to a browser's CORS preflight for the route's files and redirects.
    Preflight(Preflight),
    /// `200` with the key authorization an ACME CA asks for (HTTP-01), before any route.
    Challenge(Arc<str>),
}

impl Answer<'_> {
    /// The outcome of this answer once sent with `status` (a file's status depends on the
    /// request's conditional headers).
    pub fn outcome(&self, status: StatusCode) -> Outcome {
        match self {
            Answer::Serve(_) if status == StatusCode::NOT_MODIFIED => Outcome::NotModified,
            Answer::Serve(_) => Outcome::Served,
            Answer::AddSlash(_) => Outcome::Redirect,
            Answer::Redirect(r) if r.presigned() => Outcome::Presigned,
            Answer::Redirect(_) => Outcome::Redirect,
            Answer::Reject(_) => Outcome::Rejected,
            Answer::Denied(_) => Outcome::Denied,
            Answer::Preflight(_) => Outcome::Preflight,
            Answer::Challenge(_) => Outcome::AcmeChallenge,
        }
    }

    /// The authorization check this answer must wait for under `route`, if any: the deciding
    /// rule's own, else the route's.
    pub fn check<'r>(&self, route: &'r Route) -> Option<&'r Authorize> {
        let by_rule = match self {
            Answer::Redirect(r) => r
                .verdict
                .rule
                .and_then(|i| route.authorize_by_rule.get(i)?.as_ref()),
            _ => None,
        };
        by_rule
            .or(route.authorize.as_ref())
            .filter(|check| self.needs_yes(check.applies_to))
    }

    /// Whether it may be sent only after the application said yes, under a check that
    /// `applies_to` these answers.
    fn needs_yes(&self, applies_to: AppliesTo) -> bool {
        match (self, applies_to) {
            (Answer::Redirect(r), _) if r.presigned() => true,
            (Answer::Redirect(_) | Answer::Serve(_) | Answer::AddSlash(_), AppliesTo::All) => true,
            _ => false,
        }
    }
}

#[derive(Debug)]
pub struct LocalFile<'c> {
    /// The route whose options (cache control, precompressed variants) apply.
    pub route: &'c Route,
    /// Shared with a read that may finish on the blocking pool.
    pub file: Arc<File>,
    pub meta: Metadata,
    /// By the extension of the path requested, also for a precompressed variant.
    pub content_type: Cow<'static, str>,
    /// Set when serving a precompressed variant (`file.br`, `file.gz`).
    pub encoding: Option<Encoding>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Built from configuration and the canonical path only, never from `Host`.
    pub location: String,
    pub verdict: Verdict,
    pub cache_control: CacheControl,
    /// `Set-Cookie` values to send along (CloudFront signed cookies).
    pub cookies: Option<Arc<[String]>>,
}

impl Redirect {
    pub fn presigned(&self) -> bool {
        matches!(self.verdict.access, Access::Private(_))
    }
}

/// A cached redirect must not outlive its link: this much is kept in hand for clock skew and
/// the time between the cache's use of the redirect and S3's check of the link.
pub const REDIRECT_CACHE_MARGIN: Duration = Duration::from_secs(30);

/// How the `302` may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheControl {
    /// Public objects: `public, max-age=N` (the route's `redirect_max_age`).
    Public(HeaderValue),
    /// A link signed in a window: `private, max-age=N`, N = how long it surely stays valid.
    PrivateFor(Duration),
    /// A link signed per request: `private, no-store`. Presigned links are per-user secrets
    /// that expire; no shared cache may keep one.
    NoStore,
}

impl CacheControl {
    pub fn header_value(&self) -> HeaderValue {
        match self {
            CacheControl::Public(value) => value.clone(),
            CacheControl::PrivateFor(d) if !d.is_zero() => {
                HeaderValue::from_str(&format!("private, max-age={}", d.as_secs()))
                    .unwrap_or(HeaderValue::from_static("private, no-store"))
            }
            CacheControl::PrivateFor(_) | CacheControl::NoStore => {
                HeaderValue::from_static("private, no-store")
            }
        }
    }
}

/// Why a request was answered with an error, one variant per status-worthy cause.
#[derive(Debug, thiserror::Error)]
pub enum Reject {
    #[error("no route for this path and no default_upstream")]
    NoRoute,
    #[error("method not allowed under a route without an upstream")]
    MethodNotAllowed,
    #[error("bad path: {0}")]
    BadPath(#[from] PathError),
    #[error("not found on disk and the route has no bucket")]
    NotFound,
    #[error("a path segment starts with '.' (dotfiles are not served)")]
    Hidden,
    /// A directory is never an object: without an index file it is refused, as nginx does
    /// with `autoindex off`.
    #[error("a directory without an index file (directories are not listed)")]
    NoIndex,
    #[error("refused: not a regular file, or a link out of the root")]
    Refused,
    #[error("permission denied reading the file")]
    PermissionDenied,
    #[error("out of file descriptors: try again")]
    Overloaded,
    #[error("file system error: {0}")]
    Io(std::io::Error),
    #[error("cannot presign: {0}")]
    Sign(#[from] SignError),
    /// The authorization check did not say yes or no: never presign, never serve.
    #[error("authorization check failed: {0}")]
    CheckFailed(String),
}

impl Reject {
    /// The one mapping from cause to status.
    pub fn status(&self) -> StatusCode {
        match self {
            Reject::NoRoute | Reject::NotFound | Reject::Hidden | Reject::Refused => {
                StatusCode::NOT_FOUND
            }
            Reject::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reject::BadPath(_) => StatusCode::BAD_REQUEST,
            Reject::PermissionDenied | Reject::NoIndex => StatusCode::FORBIDDEN,
            Reject::Io(_)
            | Reject::Sign(SignError::NoCredentials)
            | Reject::Sign(SignError::CloudFront { .. }) => StatusCode::INTERNAL_SERVER_ERROR,
            // Temporary: the credentials are being refreshed, or descriptors come free.
            Reject::Sign(SignError::CredentialsExpiring)
            | Reject::Overloaded
            | Reject::CheckFailed(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// A header the status calls for (RFC 9110: 405 lists what is allowed; a 503 says when
    /// to come back).
    pub fn extra_header(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Reject::MethodNotAllowed => Some(("Allow", "GET, HEAD")),
            Reject::Sign(_) | Reject::CheckFailed(_) => Some(("Retry-After", "5")),
            Reject::Overloaded => Some(("Retry-After", "1")),
            _ => None,
        }
    }
}
