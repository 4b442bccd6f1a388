//! The heart of spillway: what to do with one request, as a value.
//!
//! `decide` is a plain function of the compiled config, the method, the raw path and the clock
//! (plus the file system, through the route's document root). The server executes its result;
//! the `explain` command prints it. Nothing here knows about Pingora.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method};

use crate::config::{Config, Encoding, Route, Upstream};
use crate::docroot::{Docroot, Io, Lookup, LookupError};
use crate::negotiate;
use crate::path::{decode_relative, PathError};
use crate::policy::{Access, Verdict};
use crate::s3::SignError;
use crate::serve::content_type;

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
    Serve(LocalFile<'c>),
    /// `301` to the directory's path with a trailing slash (a relative `Location`).
    AddSlash(String),
    /// `302` to the object in its bucket.
    Redirect(Redirect),
    /// Proxy to the legacy upstream.
    Upstream(&'c Upstream),
    /// Answer with an error status and no further work.
    Reject(Reject),
    /// Deciding needs a path the kernel has not cached: warm it off the event loop, then
    /// decide again. Only returned for `Io::CachedOnly`.
    Uncached(Warm),
}

/// A path to resolve once with blocking I/O, so the next cached-only lookup finds it.
#[derive(Debug)]
pub struct Warm {
    pub docroot: Arc<Docroot>,
    pub relative: String,
}

impl Warm {
    /// Blocking: run it on the blocking pool. The result is dropped; the dentry cache keeps
    /// what matters.
    pub fn run(&self) {
        let _ = self.docroot.lookup(&self.relative, Io::MayBlock);
    }
}

#[derive(Debug)]
pub struct LocalFile<'c> {
    /// The route whose options (cache control, precompressed variants) apply.
    pub route: &'c Route,
    pub file: File,
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
}

/// A cached redirect must not outlive its link: this much is kept in hand for clock skew and
/// the time between the cache's use of the redirect and S3's check of the link.
pub const REDIRECT_CACHE_MARGIN: Duration = Duration::from_secs(30);

/// How the `302` may be cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheControl {
    /// Public objects: `public, max-age=N` (the route's `redirect_max_age`).
    Public(http::HeaderValue),
    /// A link signed in a window: `private, max-age=N`, N = how long it surely stays valid.
    PrivateFor(Duration),
    /// A link signed per request: `private, no-store`. Presigned links are per-user secrets
    /// that expire; no shared cache may keep one.
    NoStore,
}

impl CacheControl {
    pub fn header_value(&self) -> http::HeaderValue {
        match self {
            CacheControl::Public(value) => value.clone(),
            CacheControl::PrivateFor(d) if !d.is_zero() => {
                http::HeaderValue::from_str(&format!("private, max-age={}", d.as_secs()))
                    .unwrap_or(http::HeaderValue::from_static("private, no-store"))
            }
            CacheControl::PrivateFor(_) | CacheControl::NoStore => {
                http::HeaderValue::from_static("private, no-store")
            }
        }
    }
}

impl Redirect {
    pub fn presigned(&self) -> bool {
        matches!(self.verdict.access, Access::Private(_))
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
            Reject::NoRoute | Reject::NotFound | Reject::Hidden | Reject::Refused => 404,
            Reject::MethodNotAllowed => 405,
            Reject::BadPath(_) => 400,
            Reject::PermissionDenied => 403,
            Reject::Io(_) | Reject::Sign(SignError::NoCredentials) => 500,
            // Temporary: the refresher has been asked for new credentials.
            Reject::Sign(SignError::CredentialsExpiring) => 503,
        }
    }
}

/// The parts of a request a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The raw path, still percent-encoded, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// Decides what to do with `request` at time `now`; `io` says whether file lookups may wait
/// for the disk.
pub fn decide<'c, 'p>(
    config: &'c Config,
    request: &Request<'p>,
    now: SystemTime,
    io: Io,
) -> Decided<'c, 'p> {
    let method = request.method;
    let Some((route, rest)) = config.routes.lookup(request.path) else {
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
    decided.decision = if !route.dotfiles && relative.split('/').any(|s| s.starts_with('.')) {
        // `.git`, `.env`, `.htaccess`: neither served nor sent to the bucket.
        Decision::Reject(Reject::Hidden)
    } else {
        match route.docroot.lookup(&relative, io) {
            Ok(Lookup::File(file, meta)) => serve(route, request, &relative, file, meta, io),
            Ok(Lookup::Directory) => directory(route, request, &relative, now, io),
            Ok(Lookup::Missing) => miss(route, method, &relative, now),
            Ok(Lookup::Refused) => Decision::Reject(Reject::Refused),
            Err(LookupError::Uncached) => uncached(route, &relative),
            Err(LookupError::PermissionDenied) => Decision::Reject(Reject::PermissionDenied),
            Err(LookupError::Io(e)) => Decision::Reject(Reject::Io(e)),
        }
    };
    decided.relative = Some(relative);
    decided
}

/// A regular file: pick the precompressed variant the client accepts, if the route has any.
fn serve<'c>(
    route: &'c Route,
    request: &Request,
    relative: &str,
    file: File,
    meta: Metadata,
    io: Io,
) -> Decision<'c> {
    let content_type = content_type(relative);
    let accept = request
        .headers
        .get(http::header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    for &encoding in &route.precompressed {
        if !negotiate::accepts(accept, encoding.token()) {
            continue;
        }
        let variant = format!("{relative}{}", encoding.suffix());
        match route.docroot.lookup(&variant, io) {
            Ok(Lookup::File(file, meta)) => {
                return Decision::Serve(LocalFile {
                    route,
                    file,
                    meta,
                    content_type,
                    encoding: Some(encoding),
                })
            }
            Err(LookupError::Uncached) => return uncached(route, &variant),
            _ => {}
        }
    }
    Decision::Serve(LocalFile {
        route,
        file,
        meta,
        content_type,
        encoding: None,
    })
}

/// A directory: its index file when it has one (after a redirect that adds the trailing
/// slash, so relative links in the page resolve), a miss otherwise.
fn directory<'c>(
    route: &'c Route,
    request: &Request,
    relative: &str,
    now: SystemTime,
    io: Io,
) -> Decision<'c> {
    // The request path, not `relative`: `/site` and `/site/` both have an empty relative path.
    let slashed = request.path.ends_with('/');
    for name in &route.index {
        let candidate = if relative.is_empty() || relative.ends_with('/') {
            format!("{relative}{name}")
        } else {
            format!("{relative}/{name}")
        };
        let (file, meta) = match route.docroot.lookup(&candidate, io) {
            Ok(Lookup::File(file, meta)) => (file, meta),
            Err(LookupError::Uncached) => return uncached(route, &candidate),
            _ => continue,
        };
        if slashed {
            return serve(route, request, &candidate, file, meta, io);
        }
        // Built from the request's own path (never Host). A path with an empty segment right
        // after the prefix could turn into `//host/`, a link to another site: not redirected.
        if !(route.prefix.is_empty() && request.path.starts_with("//")) {
            let mut location = String::with_capacity(request.path.len() + 2);
            location.push_str(request.path);
            location.push('/');
            if let Some(query) = request.query {
                location.push('?');
                location.push_str(query);
            }
            return Decision::AddSlash(location);
        }
    }
    miss(route, request.method, relative, now)
}
fn uncached<'c>(route: &Route, relative: &str) -> Decision<'c> {
    Decision::Uncached(Warm {
        docroot: Arc::clone(&route.docroot),
        relative: relative.to_owned(),
    })
}

/// Not on disk: redirect to the bucket, presigned when the policy says private.
fn miss<'c>(route: &Route, method: &Method, relative: &str, now: SystemTime) -> Decision<'c> {
    let Some(bucket) = &route.bucket else {
        return Decision::Reject(Reject::NotFound);
    };
    let verdict = route.policy.evaluate(relative);
    let redirect = match verdict.access {
        Access::Public => Redirect {
            location: bucket.public_url(&route.key_prefix, relative),
            verdict,
            cache_control: CacheControl::Public(route.redirect_cache_control.clone()),
        },
        Access::Private(signing) => {
            // Whole seconds, as X-Amz-Date has them, so `expires_at` is exactly S3's view.
            let signed_at = window_start(now, signing.window.unwrap_or(Duration::from_secs(1)));
            let signed = match bucket.presign(
                method.as_str(),
                &route.key_prefix,
                relative,
                signed_at,
                signing.ttl,
                signing.attachment,
            ) {
                Ok(signed) => signed,
                Err(e) => return Decision::Reject(e.into()),
            };
            // Within a window every request gets this same URL, so the redirect may be
            // cached by the browser (never a shared cache) while the link surely works.
            let cache_control = match signing.window {
                None => CacheControl::NoStore,
                Some(_) => CacheControl::PrivateFor(
                    signed
                        .expires_at
                        .duration_since(now)
                        .unwrap_or_default()
                        .saturating_sub(REDIRECT_CACHE_MARGIN),
                ),
            };
            Redirect {
                location: signed.url,
                verdict,
                cache_control,
            }
        }
    };
    Decision::Redirect(redirect)
}

/// The start of the signing window `now` falls in.
pub fn window_start(now: SystemTime, window: Duration) -> SystemTime {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let window = window.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % window)
}
