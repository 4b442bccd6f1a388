//! The heart of spillway: what to do with one request, as a value.
//!
//! `decide` is a plain function of the compiled config, the method, the raw path and the clock
//! (plus the file system, through the route's document root). The server executes its result;
//! the `explain` command prints it. Nothing here knows about Pingora.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::time::SystemTime;

use http::Method;

use crate::config::{Config, Route, Upstream};
use crate::docroot::{Lookup, LookupError};
use crate::path::{decode_relative, PathError};
use crate::policy::{Access, Verdict};
use crate::s3::SignError;

/// A decision plus what led to it, for logs and `explain`.
#[derive(Debug)]
pub struct Decided<'c, 'p> {
    pub route: Option<&'c Route>,
    /// The canonical path relative to the route, once decoded.
    pub relative: Option<Cow<'p, str>>,
    pub decision: Decision<'c>,
}

#[derive(Debug)]
pub enum Decision<'c> {
    /// Answer from a local file.
    Serve(LocalFile),
    /// `302` to the object in its bucket.
    Redirect(Redirect),
    /// Proxy to the legacy upstream.
    Upstream(&'c Upstream),
    /// Answer with an error status and no further work.
    Reject(Reject),
}

#[derive(Debug)]
pub struct LocalFile {
    pub file: File,
    pub meta: Metadata,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redirect {
    /// Built from configuration and the canonical path only, never from `Host`.
    pub location: String,
    pub verdict: Verdict,
}

impl Redirect {
    pub fn presigned(&self) -> bool {
        matches!(self.verdict.access, Access::Private { .. })
    }

    /// Presigned links are per-user secrets that expire: no shared cache may keep one.
    pub fn cache_control(&self) -> Option<&'static str> {
        self.presigned().then_some("private, no-store")
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
    #[error("refused: not a regular file, or a link out of the root")]
    Refused,
    #[error("permission denied reading the file")]
    PermissionDenied,
    #[error("file system error: {0}")]
    Io(std::io::Error),
    #[error("cannot presign: {0}")]
    Sign(#[from] SignError),
}

impl Reject {
    /// The one mapping from cause to status.
    pub fn status(&self) -> u16 {
        match self {
            Reject::NoRoute | Reject::NotFound | Reject::Refused => 404,
            Reject::MethodNotAllowed => 405,
            Reject::BadPath(_) => 400,
            Reject::PermissionDenied => 403,
            Reject::Io(_) | Reject::Sign(_) => 500,
        }
    }
}

/// Decides what to do with `method path` (the raw path, without the query) at time `now`.
pub fn decide<'c, 'p>(
    config: &'c Config,
    method: &Method,
    path: &'p str,
    now: SystemTime,
) -> Decided<'c, 'p> {
    let Some((route, rest)) = config.routes.lookup(path) else {
        let decision = match &config.default_upstream {
            Some(upstream) => Decision::Upstream(upstream),
            None => Decision::Reject(Reject::NoRoute),
        };
        return Decided {
            route: None,
            relative: None,
            decision,
        };
    };
    let mut decided = Decided {
        route: Some(route),
        relative: None,
        decision: Decision::Reject(Reject::NoRoute),
    };
    if method != Method::GET && method != Method::HEAD {
        // Legacy apps accept uploads and deletes at these URLs: let them.
        decided.decision = match &config.default_upstream {
            Some(upstream) => Decision::Upstream(upstream),
            None => Decision::Reject(Reject::MethodNotAllowed),
        };
        return decided;
    }
    let relative = match decode_relative(rest) {
        Ok(relative) => relative,
        Err(e) => {
            decided.decision = Decision::Reject(e.into());
            return decided;
        }
    };
    decided.decision = match route.docroot.lookup(&relative) {
        Ok(Lookup::File(file, meta)) => Decision::Serve(LocalFile { file, meta }),
        Ok(Lookup::Missing | Lookup::Directory) => miss(route, method, &relative, now),
        Ok(Lookup::Refused) => Decision::Reject(Reject::Refused),
        Err(LookupError::PermissionDenied) => Decision::Reject(Reject::PermissionDenied),
        Err(LookupError::Io(e)) => Decision::Reject(Reject::Io(e)),
    };
    decided.relative = Some(relative);
    decided
}

/// Not on disk: redirect to the bucket, presigned when the policy says private.
fn miss<'c>(route: &Route, method: &Method, relative: &str, now: SystemTime) -> Decision<'c> {
    let Some(bucket) = &route.bucket else {
        return Decision::Reject(Reject::NotFound);
    };
    let verdict = route.policy.evaluate(relative);
    let url = bucket.object_url(&route.key_prefix, relative);
    let location = match verdict.access {
        Access::Public => url,
        Access::Private { ttl } => match bucket.presign(method.as_str(), url, now, ttl) {
            Ok(signed) => signed,
            Err(e) => return Decision::Reject(e.into()),
        },
    };
    Decision::Redirect(Redirect { location, verdict })
}
