//! The heart of spillway: what to do with one request, as a value.
//!
//! `decide` is a plain function of the compiled config, the request, the clock and the file
//! system (through the route's document root). The server executes its result; `explain`
//! prints it. Whether a lookup may wait for the disk is the type parameter `io`: on the event
//! loop a lookup the kernel cannot answer from its cache comes back as a pending `Warm`, never
//! as an answer.

use std::borrow::Cow;
use std::fs::{File, Metadata};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method};

use crate::core::answer::{
    Answer, CacheControl, LocalFile, Redirect, Reject, REDIRECT_CACHE_MARGIN,
};
use crate::core::key;
use crate::core::path::decode_relative;
use crate::core::policy::Access;
use crate::core::site::{Route, Site};
use crate::core::upstream::Upstream;
use crate::fs::docroot::Io;
use crate::fs::lookup::{Lookup, LookupError};
use crate::http::content_type::content_type;
use crate::http::negotiate;
use crate::s3::key::ObjectKey;

/// The parts of a request a decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a Method,
    /// The raw path, still percent-encoded, without the query.
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a HeaderMap,
}

/// A decision plus what led to it, for logs and `explain`.
#[derive(Debug)]
pub struct Decided<'c, 'p> {
    pub route: Option<&'c Route>,
    /// The canonical path relative to the route, once decoded.
    pub relative: Option<Cow<'p, str>>,
    pub decision: Decision<'c>,
}

impl Decided<'_, '_> {
    /// The S3 key the request names, for routes with a bucket.
    pub fn key(&self) -> Option<ObjectKey<'_>> {
        let route = self.route.filter(|r| r.bucket.is_some())?;
        Some(key::of(route, self.relative.as_deref()?))
    }
}

// Built and moved once per request: boxing the answer would cost an allocation each time.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Decision<'c> {
    /// spillway answers.
    Answer(Answer<'c>),
    /// The legacy upstream answers.
    Upstream(&'c Upstream),
}

/// Decides what to do with `request` at time `now`. `io` says whether file lookups may wait
/// for the disk; when they may not, a lookup that would have to is returned as `Err`.
pub fn decide<'c, 'p, I: Io>(
    site: &'c Site,
    request: &Request<'p>,
    now: SystemTime,
    io: &I,
) -> Result<Decided<'c, 'p>, I::Pending> {
    decide_as(Shadow::Honour, site, request, now, io)
}

/// Whether a `shadow: true` route sends everything upstream (as it does) or is decided as if
/// it were live (what the proxy logs it would have done).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shadow {
    Honour,
    AsIfLive,
}

/// [`decide`], with shadow routes taken as `shadow` says.
pub fn decide_as<'c, 'p, I: Io>(
    shadow: Shadow,
    site: &'c Site,
    request: &Request<'p>,
    now: SystemTime,
    io: &I,
) -> Result<Decided<'c, 'p>, I::Pending> {
    let upstream_or = |route, reject| match site.upstream_for(route) {
        Some(upstream) => Decision::Upstream(upstream),
        None => Decision::Answer(Answer::Reject(reject)),
    };
    let Some((route, rest)) = site.routes.lookup(request.path) else {
        return Ok(Decided {
            route: None,
            relative: None,
            decision: upstream_or(None, Reject::NoRoute),
        });
    };
    let decided = |relative, answer| Decided {
        route: Some(route),
        relative,
        decision: Decision::Answer(answer),
    };
    // A shadow route sends everything upstream, as if spillway were not there (it has an
    // upstream: the config says so). Legacy apps accept uploads and deletes at these URLs: let
    // them.
    let shadowed = shadow == Shadow::Honour && route.shadow;
    let preflight = route
        .cors
        .as_ref()
        .and_then(|cors| cors.preflight(request.method, request.headers));
    if let (Some(preflight), false) = (preflight, shadowed) {
        return Ok(decided(None, Answer::Preflight(preflight)));
    }
    if shadowed || (request.method != Method::GET && request.method != Method::HEAD) {
        return Ok(Decided {
            route: Some(route),
            relative: None,
            decision: upstream_or(Some(route), Reject::MethodNotAllowed),
        });
    }
    let relative = match decode_relative(rest) {
        Ok(relative) => relative,
        Err(e) => return Ok(decided(None, Answer::Reject(e.into()))),
    };
    let answer = if route.hides(&relative) {
        // `.git`, `.env`, `.htaccess`: neither served nor sent to the bucket.
        Answer::Reject(Reject::Hidden)
    } else {
        local(route, request, &relative, now, io)?
    };
    Ok(decided(Some(relative), answer))
}

/// The answer for a canonical path under a route: the file, or what a miss gets.
fn local<'c, I: Io>(
    route: &'c Route,
    request: &Request,
    relative: &str,
    now: SystemTime,
    io: &I,
) -> Result<Answer<'c>, I::Pending> {
    Ok(match io.lookup(&route.docroot, relative)? {
        Ok(Lookup::File(file, meta)) => serve(route, request, relative, file, meta, io)?,
        Ok(Lookup::Directory) => directory(route, request, relative, io)?,
        Ok(Lookup::Missing) => miss(route, request.method, relative, now),
        Ok(Lookup::Refused) => Answer::Reject(Reject::Refused),
        Err(LookupError::PermissionDenied) => Answer::Reject(Reject::PermissionDenied),
        Err(LookupError::NoDescriptors) => Answer::Reject(Reject::Overloaded),
        Err(LookupError::Io(e)) => Answer::Reject(Reject::Io(e)),
    })
}

/// A regular file: the precompressed variant the client accepts, if the route has one.
fn serve<'c, I: Io>(
    route: &'c Route,
    request: &Request,
    relative: &str,
    file: Arc<File>,
    meta: Metadata,
    io: &I,
) -> Result<Answer<'c>, I::Pending> {
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
        if let Ok(Lookup::File(file, meta)) = io.lookup(&route.docroot, &variant)? {
            return Ok(Answer::Serve(LocalFile {
                route,
                file,
                meta,
                content_type,
                encoding: Some(encoding),
            }));
        }
    }
    Ok(Answer::Serve(LocalFile {
        route,
        file,
        meta,
        content_type,
        encoding: None,
    }))
}

/// A directory: its index file when it has one (after a redirect that adds the trailing
/// slash, so relative links in the page resolve), else 403. Never a redirect: a directory is
/// not an object, and its key (`uploads/`) would name none.
fn directory<'c, I: Io>(
    route: &'c Route,
    request: &Request,
    relative: &str,
    io: &I,
) -> Result<Answer<'c>, I::Pending> {
    // The request path, not `relative`: `/site` and `/site/` both have an empty relative path.
    let slashed = request.path.ends_with('/');
    for name in &route.index {
        let candidate = if relative.is_empty() || relative.ends_with('/') {
            format!("{relative}{name}")
        } else {
            format!("{relative}/{name}")
        };
        let Ok(Lookup::File(file, meta)) = io.lookup(&route.docroot, &candidate)? else {
            continue;
        };
        if slashed {
            return serve(route, request, &candidate, file, meta, io);
        }
        // Built from the request's own path (never Host). A path with an empty segment right
        // after the prefix could turn into `//host/`, a link to another site: not redirected.
        if !(route.prefix.is_empty() && request.path.starts_with("//")) {
            return Ok(Answer::AddSlash(with_slash(request)));
        }
    }
    Ok(Answer::Reject(Reject::NoIndex))
}

/// The request's path and query with a `/` after the path.
fn with_slash(request: &Request) -> String {
    let mut location = String::with_capacity(request.path.len() + 2);
    location.push_str(request.path);
    location.push('/');
    if let Some(query) = request.query {
        location.push('?');
        location.push_str(query);
    }
    location
}

/// Not on disk: redirect to the bucket, presigned when the policy says private.
fn miss<'c>(route: &Route, method: &Method, relative: &str, now: SystemTime) -> Answer<'c> {
    let Some(bucket) = &route.bucket else {
        return Answer::Reject(Reject::NotFound);
    };
    let key = key::of(route, relative);
    let verdict = route.policy.evaluate(relative);
    let redirect = match verdict.access {
        Access::Public => Redirect {
            location: bucket.public_url(&key),
            verdict,
            cache_control: CacheControl::Public(route.redirect_cache_control.clone()),
            cookies: None,
        },
        Access::Private(signing) => {
            // Whole seconds, as X-Amz-Date has them, so `expires_at` is exactly S3's view.
            let sign =
                |at| bucket.presign(method.as_str(), &key, at, signing.ttl, signing.attachment);
            let signed_at = window_start(now, signing.window.unwrap_or(Duration::from_secs(1)));
            let signed = match sign(signed_at) {
                // The window's link ends before the window does (credentials that expire
                // within it cut its ttl): this request gets a link of its own second.
                Ok(signed) if signed.expires_at <= now + REDIRECT_CACHE_MARGIN => {
                    sign(window_start(now, Duration::from_secs(1)))
                }
                signed => signed,
            };
            let signed = match signed {
                Ok(signed) => signed,
                Err(e) => return Answer::Reject(e.into()),
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
                cookies: signed.cookies,
            }
        }
    };
    Answer::Redirect(redirect)
}

/// The start of the signing window `now` falls in.
pub fn window_start(now: SystemTime, window: Duration) -> SystemTime {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let window = window.as_secs().max(1);
    UNIX_EPOCH + Duration::from_secs(since_epoch - since_epoch % window)
}
