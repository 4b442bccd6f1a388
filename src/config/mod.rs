//! `proxy.yaml` → a checked, compiled [`Config`].
//!
//! Parse, then compile: `raw` mirrors the YAML with serde; `compile` checks everything that needs
//! more than one field (names that must exist, roots that must be directories, credentials a
//! private route needs), resolves host names once, opens the document roots and builds the
//! matchers. Every problem names its key path and, through `locate`, its line.

mod describe;
mod locate;
mod raw;

pub use describe::describe;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::credentials::{self, CredentialCell};
use crate::docroot::Docroot;
use crate::policy::{Access, Policy, Signing};
use crate::route::RouteTable;
use crate::s3::{Addressing, Bucket, BucketError, MAX_TTL};
use crate::sigv4::Keys;
use locate::Step;
use raw::{
    AllowDeny, RawAccess, RawBucket, RawConfig, RawCredentials, RawDisposition, RawEncoding,
    RawRoute, RawUpstream,
};

/// Presigned links live this long unless a route says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How long clients and shared caches may keep a public redirect, unless a route says otherwise.
pub const DEFAULT_REDIRECT_MAX_AGE: Duration = Duration::from_secs(300);

/// The whole, checked configuration the server runs on.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub shutdown: Shutdown,
    pub routes: RouteTable<Route>,
    pub default_upstream: Option<Arc<Upstream>>,
    /// Credentials from the AWS provider chain, when a private route uses them: the background
    /// refresher keeps them fresh for links up to `longest_ttl`.
    pub chain_credentials: Option<ChainCredentials>,
}

#[derive(Debug)]
pub struct ChainCredentials {
    pub cell: Arc<CredentialCell>,
    pub longest_ttl: Duration,
    /// For the chain's own calls (STS).
    pub region: String,
}

/// How long SIGTERM waits. Pingora's defaults (a 5-minute grace period) are too long for a
/// proxy of mostly short requests; both are configurable.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// After SIGTERM, listeners close and in-flight requests get this long to finish.
    pub grace_period: Duration,
    /// Then the worker runtimes get this long to stop.
    pub timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_period: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug)]
pub struct Upstream {
    pub name: String,
    pub address: SocketAddr,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
}

#[derive(Debug)]
pub struct Route {
    pub prefix: String,
    /// Shared so a lookup can be finished on the blocking pool.
    pub docroot: Arc<Docroot>,
    /// Where misses go; `None` makes a miss a plain 404.
    pub bucket: Option<Arc<Bucket>>,
    pub bucket_name: Option<String>,
    pub key_prefix: String,
    pub policy: Policy,
    /// Index files for directory requests, tried in order; empty = directories are misses.
    pub index: Vec<String>,
    /// Precompressed variants to look for beside a file, in order of preference.
    pub precompressed: Vec<Encoding>,
    /// Sent on 200, 206 and 304 responses for local files.
    pub cache_control: Option<http::HeaderValue>,
    /// Serve and redirect paths with a segment starting with `.` (`.git`, `.env`).
    pub dotfiles: bool,
    /// `Cache-Control` of public redirects: `public, max-age=N`.
    pub redirect_cache_control: http::HeaderValue,
}

/// A content coding spillway can serve precompressed, and the suffix of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file suffix, as written by `brotli`, `zstd` and `gzip`.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// One problem in the configuration, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub message: String,
    pub line: Option<(usize, usize)>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)?;
        if let Some((line, column)) = self.line {
            write!(f, " at line {line} column {column}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// serde_yaml's message already carries the key path and line.
    #[error("{}: {source}", path.display())]
    Syntax {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Reads, parses and compiles a config file. Relative roots resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, &Environment::process())
        .map(|mut c| {
            c.source = path.to_owned();
            c
        })
        .map_err(|e| match e {
            ParseError::Syntax(source) => ConfigError::Syntax {
                path: path.to_owned(),
                source,
            },
            ParseError::Invalid(problems) => ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            },
        })
}

#[derive(Debug)]
pub enum ParseError {
    Syntax(serde_yaml::Error),
    Invalid(Vec<Problem>),
}

/// What compiling a config may read from outside it; tests pass their own.
pub struct Environment<'a> {
    /// Environment variables, for `${VAR}` in credentials.
    pub var: &'a dyn Fn(&str) -> Option<String>,
    /// The AWS provider chain. Called at most once, and only when a private route needs a
    /// bucket without `credentials:`.
    /// The argument is a region to use for the chain's own calls (STS), so it need not ask
    /// instance metadata for one.
    pub chain: &'a dyn Fn(&str) -> Result<Keys, String>,
}

fn process_var(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

impl Environment<'static> {
    /// The real process environment and the real provider chain.
    pub fn process() -> Environment<'static> {
        Environment {
            var: &process_var,
            chain: &credentials::fetch_from_chain_blocking,
        }
    }
}

/// Parses and compiles YAML text; relative roots resolve against `base`.
pub fn parse(text: &str, base: &Path, env: &Environment) -> Result<Config, ParseError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(ParseError::Syntax)?;
    let mut compiler = Compiler {
        text,
        base,
        env,
        problems: Vec::new(),
        chain_cell: Arc::default(),
        chain_buckets: Vec::new(),
        chain_users: Vec::new(),
        chain_region: String::new(),
    };
    let config = compiler.compile(raw);
    match config {
        Some(config) if compiler.problems.is_empty() => Ok(config),
        _ => Err(ParseError::Invalid(compiler.problems)),
    }
}

struct Compiler<'a> {
    text: &'a str,
    base: &'a Path,
    env: &'a Environment<'a>,
    problems: Vec<Problem>,
    /// Shared by every bucket without `credentials:`; filled from the chain if needed.
    chain_cell: Arc<CredentialCell>,
    /// Names of those buckets.
    chain_buckets: Vec<String>,
    /// Private routes and rules that sign with chain credentials: where, and their ttl.
    chain_users: Vec<(Vec<Step>, String, Duration)>,
    /// The region of the first bucket using the chain.
    chain_region: String,
}

fn key(k: &str) -> Step {
    Step::Key(k.to_owned())
}

impl Compiler<'_> {
    fn problem(&mut self, path: &[Step], message: impl Into<String>) {
        self.problems.push(Problem {
            key: locate::render(path),
            message: message.into(),
            line: locate::locate(self.text, path),
        });
    }

    fn compile(&mut self, raw: RawConfig) -> Option<Config> {
        let listen = self.listen(&raw.listen);
        let threads = match raw.threads {
            Some(0) => {
                self.problem(&[key("threads")], "must be at least 1");
                1
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let shutdown = Shutdown {
            grace_period: raw
                .shutdown
                .grace_period
                .unwrap_or(Shutdown::default().grace_period),
            timeout: raw.shutdown.timeout.unwrap_or(Shutdown::default().timeout),
        };
        let upstreams: BTreeMap<&str, Arc<Upstream>> = raw
            .upstreams
            .iter()
            .filter_map(|(name, u)| Some((name.as_str(), Arc::new(self.upstream(name, u)?))))
            .collect();
        let default_upstream = raw.default_upstream.as_deref().and_then(|name| {
            let found = upstreams.get(name).cloned();
            if found.is_none() && !raw.upstreams.contains_key(name) {
                self.problem(
                    &[key("default_upstream")],
                    format!(
                        "unknown upstream {name:?} (defined: {})",
                        names(raw.upstreams.keys())
                    ),
                );
            }
            found
        });
        let buckets: BTreeMap<&str, Arc<Bucket>> = raw
            .buckets
            .iter()
            .filter_map(|(name, b)| Some((name.as_str(), Arc::new(self.bucket(name, b)?))))
            .collect();
        let mut routes = RouteTable::default();
        if raw.routes.is_empty() && default_upstream.is_none() {
            self.problem(
                &[key("routes")],
                "no routes and no default_upstream: nothing to serve",
            );
        }
        for (index, r) in raw.routes.iter().enumerate() {
            let at = [key("routes"), Step::Index(index)];
            let Some(route) = self.route(&at, r, &raw, &buckets) else {
                continue;
            };
            if let Err(e) = routes.insert(&r.prefix, route) {
                self.problem(
                    &[at[0].clone(), at[1].clone(), key("prefix")],
                    format!("{:?} {e}", r.prefix),
                );
            }
        }
        let chain_credentials = self.resolve_chain();
        Some(Config {
            source: PathBuf::new(),
            listen,
            threads,
            shutdown,
            routes,
            default_upstream,
            chain_credentials,
        })
    }

    fn listen(&mut self, listen: &raw::Listen) -> Vec<SocketAddr> {
        let addresses = &listen.addresses;
        if addresses.is_empty() {
            self.problem(&[key("listen")], "needs at least one address");
        }
        let mut all = Vec::new();
        for (i, address) in addresses.iter().enumerate() {
            match resolve(address) {
                Ok(mut addrs) => all.append(&mut addrs),
                Err(e) if listen.is_list => self.problem(&[key("listen"), Step::Index(i)], e),
                Err(e) => self.problem(&[key("listen")], e),
            }
        }
        all
    }

    fn upstream(&mut self, name: &str, raw: &RawUpstream) -> Option<Upstream> {
        let at = [key("upstreams"), key(name), key("address")];
        // Resolved here, once: Pingora's HttpPeer would otherwise resolve per request, with a
        // blocking call that panics on failure.
        let address = match resolve(&raw.address) {
            Ok(addrs) => addrs[0],
            Err(e) => {
                self.problem(&at, e);
                return None;
            }
        };
        Some(Upstream {
            name: name.to_owned(),
            address,
            connect_timeout: raw.connect_timeout.unwrap_or(Duration::from_secs(2)),
            read_timeout: raw.read_timeout.unwrap_or(Duration::from_secs(60)),
            write_timeout: raw.write_timeout.unwrap_or(Duration::from_secs(60)),
            idle_timeout: raw.idle_timeout.unwrap_or(Duration::from_secs(60)),
        })
    }

    fn bucket(&mut self, name: &str, raw: &RawBucket) -> Option<Bucket> {
        let at = |field: &str| [key("buckets"), key(name), key(field)];
        let credentials = match &raw.credentials {
            Some(creds) => Arc::new(CredentialCell::with(self.explicit_keys(name, creds)?)),
            None => {
                self.chain_buckets.push(name.to_owned());
                if self.chain_region.is_empty() {
                    self.chain_region = raw.region.clone();
                }
                Arc::clone(&self.chain_cell)
            }
        };
        let addressing = Addressing {
            endpoint: raw.endpoint.as_deref(),
            path_style: raw.path_style,
            dualstack: raw.dualstack,
            accelerate: raw.accelerate,
            public_url: raw.public_url.as_deref(),
        };
        match Bucket::new(&raw.bucket, &raw.region, &addressing, credentials) {
            Ok(bucket) => Some(bucket),
            Err(e) => {
                let field = match e {
                    BucketError::BadName(_) => "bucket",
                    BucketError::BadRegion(_) => "region",
                    BucketError::BadEndpoint(_) | BucketError::AwsOnly => "endpoint",
                    BucketError::VirtualHostNeedsName => "path_style",
                    BucketError::BadPublicUrl(_) => "public_url",
                    BucketError::AccelerateNeedsVirtualHost => "accelerate",
                };
                self.problem(&at(field), e.to_string());
                None
            }
        }
    }

    /// Keys written in the YAML, with `${VAR}` expanded from the environment.
    fn explicit_keys(&mut self, bucket: &str, raw: &RawCredentials) -> Option<Keys> {
        let mut expand = |field: &str, value: &str| {
            let at = [key("buckets"), key(bucket), key("credentials"), key(field)];
            match credentials::expand(value, self.env.var) {
                Ok(v) if v.is_empty() => {
                    self.problem(&at, "is empty");
                    None
                }
                Ok(v) => Some(v),
                Err(e) => {
                    self.problem(&at, e);
                    None
                }
            }
        };
        let id = expand("access_key_id", &raw.access_key_id);
        let secret = expand("secret_access_key", &raw.secret_access_key);
        let token = match &raw.session_token {
            Some(t) => Some(expand("session_token", t)?),
            None => None,
        };
        Some(Keys::new(id?, secret?, token, None, "proxy.yaml"))
    }

    /// Fetches chain credentials if a private route needs them; reports each route that cannot
    /// sign otherwise.
    fn resolve_chain(&mut self) -> Option<ChainCredentials> {
        if self.chain_users.is_empty() {
            return None;
        }
        match (self.env.chain)(&self.chain_region) {
            Ok(keys) => {
                self.chain_cell.set(keys);
                let longest_ttl = self.chain_users.iter().map(|(_, _, ttl)| *ttl).max()?;
                Some(ChainCredentials {
                    cell: Arc::clone(&self.chain_cell),
                    longest_ttl,
                    region: self.chain_region.clone(),
                })
            }
            Err(e) => {
                for (at, bucket, _) in std::mem::take(&mut self.chain_users) {
                    self.problem(
                        &at,
                        format!(
                            "private objects need credentials to presign, but bucket {bucket:?} has no `credentials:` and the AWS provider chain (environment, profile, web identity, container, instance metadata) found none: {e}"
                        ),
                    );
                }
                None
            }
        }
    }

    fn route(
        &mut self,
        at: &[Step],
        raw: &RawRoute,
        config: &RawConfig,
        buckets: &BTreeMap<&str, Arc<Bucket>>,
    ) -> Option<Route> {
        let field = |k: &str| [at, &[key(k)]].concat();
        let root_path = self.base.join(&raw.root);
        let follow_symlinks = raw.symlinks != Some(AllowDeny::Deny);
        let docroot = match Docroot::open(&root_path, follow_symlinks) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    &field("root"),
                    format!("cannot open {} as a directory: {e}", root_path.display()),
                );
                None
            }
        };
        let bucket = match raw.bucket.as_deref() {
            None => None,
            Some(name) => match buckets.get(name) {
                Some(b) => Some(b.clone()),
                None => {
                    if !config.buckets.contains_key(name) {
                        self.problem(
                            &field("bucket"),
                            format!(
                                "unknown bucket {name:?} (defined: {})",
                                names(config.buckets.keys())
                            ),
                        );
                    }
                    None
                }
            },
        };
        if raw.key_prefix.starts_with('/') {
            self.problem(
                &field("key_prefix"),
                "must not start with '/' (S3 keys have no leading slash)",
            );
        }
        let route_signing = self.signing(
            at,
            raw.ttl,
            raw.sign_window,
            raw.content_disposition,
            Signing::with_ttl(DEFAULT_TTL),
        );
        let access = |a: RawAccess, signing: Signing| match a {
            RawAccess::Public => Access::Public,
            RawAccess::Private => Access::Private(signing),
        };
        // Private by default: forgetting `access:` must never publish an object.
        let default = access(raw.access.unwrap_or(RawAccess::Private), route_signing);
        let mut policy = Policy::new(default);
        // Where to point if a private object cannot be signed (the `access:` that made it
        // private, or the route itself when private came from the default), and the longest
        // link the credentials must cover.
        let mut private_at = (default != Access::Public).then(|| match raw.access {
            Some(_) => field("access"),
            None => at.to_vec(),
        });
        let mut longest_ttl = route_signing.ttl;
        for (i, rule) in raw.rules.iter().enumerate() {
            let rule_at = [at, &[key("rules"), Step::Index(i)]].concat();
            let signing = self.signing(
                &rule_at,
                rule.ttl,
                rule.sign_window,
                rule.content_disposition,
                route_signing,
            );
            if rule.access == RawAccess::Private {
                longest_ttl = longest_ttl.max(signing.ttl);
                if private_at.is_none() {
                    private_at = Some([rule_at.as_slice(), &[key("access")]].concat());
                }
            }
            if let Err(e) = policy.add_rule(&rule.pattern, access(rule.access, signing)) {
                self.problem(
                    &[rule_at.as_slice(), &[key("match")]].concat(),
                    e.to_string(),
                );
            }
        }
        if let (Some(name), Some(private_at)) = (raw.bucket.as_deref(), private_at) {
            if self.chain_buckets.iter().any(|b| b == name) {
                self.chain_users
                    .push((private_at, name.to_owned(), longest_ttl));
            }
        }
        let max_age = raw
            .redirect_max_age
            .unwrap_or(DEFAULT_REDIRECT_MAX_AGE)
            .as_secs();
        let redirect_cache_control =
            http::HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .unwrap_or(http::HeaderValue::from_static("public"));
        for (i, name) in raw.index.iter().enumerate() {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                self.problem(
                    &[field("index").as_slice(), &[Step::Index(i)]].concat(),
                    format!("{name:?} must be a plain file name like index.html"),
                );
            }
        }
        let cache_control = raw.cache_control.as_deref().and_then(|value| {
            let parsed = http::HeaderValue::from_str(value).ok();
            if parsed.is_none() {
                self.problem(&field("cache_control"), "is not a valid header value");
            }
            parsed
        });
        let precompressed = raw
            .precompressed
            .iter()
            .map(|e| match e {
                RawEncoding::Br => Encoding::Br,
                RawEncoding::Zstd => Encoding::Zstd,
                RawEncoding::Gzip => Encoding::Gzip,
            })
            .collect();
        Some(Route {
            prefix: raw.prefix.clone(),
            docroot: Arc::new(docroot?),
            bucket,
            bucket_name: raw.bucket.clone(),
            key_prefix: raw.key_prefix.clone(),
            policy,
            index: raw.index.clone(),
            precompressed,
            cache_control,
            dotfiles: raw.dotfiles == Some(AllowDeny::Allow),
            redirect_cache_control,
        })
    }

    /// How a route or rule signs: its own settings over `inherited` ones.
    fn signing(
        &mut self,
        at: &[Step],
        ttl: Option<Duration>,
        window: Option<Duration>,
        disposition: Option<RawDisposition>,
        inherited: Signing,
    ) -> Signing {
        let field = |k: &str| [at, &[key(k)]].concat();
        let ttl = match ttl {
            Some(_) => self.ttl(&field("ttl"), ttl),
            None => inherited.ttl,
        };
        let explicit_window = window.is_some();
        let window = window.or(inherited.window);
        if let Some(w) = window {
            if w < Duration::from_secs(1) || w >= ttl {
                let at = if explicit_window {
                    field("sign_window")
                } else {
                    field("ttl")
                };
                self.problem(
                    &at,
                    format!(
                        "sign_window ({}) must be at least 1s and shorter than the ttl ({}): links are valid for ttl − sign_window at least",
                        humantime::format_duration(w),
                        humantime::format_duration(ttl)
                    ),
                );
            }
        }
        Signing {
            ttl,
            window,
            attachment: disposition
                .map_or(inherited.attachment, |d| d == RawDisposition::Attachment),
        }
    }

    fn ttl(&mut self, at: &[Step], ttl: Option<Duration>) -> Duration {
        let ttl = ttl.unwrap_or(DEFAULT_TTL);
        if ttl < Duration::from_secs(1) || ttl > MAX_TTL {
            self.problem(at, "must be between 1s and 7 days (the SigV4 limit)");
        }
        ttl
    }
}

/// One line per problem, each naming the file, so every line can be jumped to.
fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect();
    lines.join("\n")
}

fn resolve(address: &str) -> Result<Vec<SocketAddr>, String> {
    match address.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("{address:?} resolves to no address"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("{address:?} is not a usable host:port ({e})")),
    }
}

fn names<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let all: Vec<&str> = keys.map(String::as_str).collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}
