//! The compiled site: routes (each a prefix, a document root, a bucket and its access policy,
//! an upstream, an authorization check, how offload moves its files) and the upstreams. What
//! `decide` reads; built by `config`, never changed while it serves.

use crate::core::compress::Compress;
use crate::core::limits::UpstreamLimits;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::core::authorize::Authorize;
use crate::core::policy::Policy;
use crate::core::route::RouteTable;
use crate::core::upstream::Upstream;
use crate::fs::docroot::Docroot;
use crate::http::negotiate::Encoding;
use crate::s3::Bucket;

/// Every route, and where requests outside them go.
#[derive(Debug, Default)]
pub struct Site {
    pub routes: RouteTable<Route>,
    pub default_upstream: Option<Arc<Upstream>>,
    /// What goes to the upstream from outside routes, and from routes without `limits:`.
    pub limits: Arc<UpstreamLimits>,
    /// Proxies in front whose `X-Forwarded-For` is believed (for per-client limits).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Compression of upstream answers outside routes and under routes without `compress:`.
    pub compress: Option<Arc<Compress>>,
}

impl Site {
    /// The upstream a request under `route` (or under none) is proxied to: the route's own
    /// `upstream:`, else `default_upstream`.
    pub fn upstream_for<'a>(&'a self, route: Option<&'a Route>) -> Option<&'a Arc<Upstream>> {
        route
            .and_then(|r| r.upstream.as_ref())
            .or(self.default_upstream.as_ref())
    }

    /// How pages from the default upstream are compressed, if at all (`route`: the request's;
    /// under a route the upstream gets only what is not a page: bodies, shadow traffic).
    pub fn compress_for<'a>(&'a self, route: Option<&'a Route>) -> Option<&'a Compress> {
        match route {
            Some(_) => None,
            None => self.compress.as_deref(),
        }
    }

    /// The client a request from `peer` is from (see [`crate::core::client::client_ip`]).
    pub fn client_ip(&self, peer: Option<IpAddr>, headers: &http::HeaderMap) -> Option<IpAddr> {
        peer.map(|peer| crate::core::client::client_ip(peer, headers, &self.trusted_proxies))
    }

    /// The limits a request under `route` (or under none) is held to on its way upstream: the
    /// route's own `limits:`, else the top-level ones.
    pub fn limits_for<'a>(&'a self, route: Option<&'a Route>) -> &'a Arc<UpstreamLimits> {
        route
            .and_then(|r| r.limits.as_ref())
            .unwrap_or(&self.limits)
    }
}

#[derive(Debug)]
pub struct Route {
    /// Its place in the config, a label for metrics.
    pub id: usize,
    pub prefix: String,
    /// Shared so a lookup can be finished on the blocking pool.
    pub docroot: Arc<Docroot>,
    /// Where misses go; `None` makes a miss a plain 404.
    pub bucket: Option<Arc<Bucket>>,
    pub bucket_name: Option<String>,
    /// Where its requests that go upstream (uploads, deletes) are sent; `None`: the default.
    pub upstream: Option<Arc<Upstream>>,
    /// The application's check before an answer is sent, if configured.
    pub authorize: Option<Authorize>,
    /// A rule's own check, by the rule's index, for the redirects that rule decides.
    pub authorize_by_rule: Vec<Option<Authorize>>,
    /// Shadow mode: everything goes upstream; spillway only logs what it would have done.
    pub shadow: bool,
    pub key_prefix: String,
    pub policy: Policy,
    /// Index files for directory requests, tried in order; empty = directories are misses.
    pub index: Vec<String>,
    /// Precompressed variants to look for beside a file, in order of preference.
    pub precompressed: Vec<Encoding>,
    /// Sent on 200, 206 and 304 responses for local files.
    pub cache_control: Option<http::HeaderValue>,
    /// Whether paths with a segment starting with `.` (`.git`, `.env`) are served.
    pub dotfiles: Dotfiles,
    /// `Cache-Control` of public redirects: `public, max-age=N`.
    pub redirect_cache_control: http::HeaderValue,
    /// How `spillway offload` moves this route's files; `None` (no `offload:` block): it never
    /// touches them.
    pub offload: Option<Offload>,
    /// Which other origins' pages may read its files and redirects; `None`: no CORS fields.
    pub cors: Option<crate::core::cors::Cors>,
    /// What it lets through to its upstream; `None`: the top-level `limits:`.
    pub limits: Option<Arc<UpstreamLimits>>,
}

impl Route {
    /// Whether `relative` is never served nor redirected (see [`Dotfiles::hide`]).
    pub fn hides(&self, relative: &str) -> bool {
        self.dotfiles.hide(relative)
    }
}

/// `dotfiles:` on a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dotfiles {
    Deny,
    Allow,
}

impl Dotfiles {
    /// Whether `relative` is hidden: a segment starts with `.` and dotfiles are denied. The one
    /// rule the server and `offload` both follow.
    pub fn hide(self, relative: &str) -> bool {
        self == Dotfiles::Deny && relative.split('/').any(|s| s.starts_with('.'))
    }
}

/// `offload:` on a route.
#[derive(Debug, Clone)]
pub struct Offload {
    /// A file must have been unchanged (mtime and ctime) this long.
    pub min_age: Duration,
    pub after: After,
    /// Files in flight at once (and parts of large files).
    pub concurrency: usize,
    /// Files this large or larger go up in parts.
    pub multipart_threshold: u64,
}

impl Default for Offload {
    fn default() -> Self {
        Offload {
            min_age: Duration::from_secs(600),
            after: After::Delete,
            concurrency: 8,
            multipart_threshold: 64 << 20,
        }
    }
}

/// What becomes of a local file once its object is proven to be in the bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum After {
    Delete,
    /// Renamed into this directory (same file system as the root), under its relative path.
    Archive(PathBuf),
    /// Left in place: upload and verify only.
    Keep,
}
