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

use aws_credential_types::Credentials;

use crate::docroot::Docroot;
use crate::policy::{Access, Policy};
use crate::route::RouteTable;
use crate::s3::{Bucket, MAX_TTL};
use locate::Step;
use raw::{
    AllowDeny, RawAccess, RawBucket, RawConfig, RawCredentials, RawEncoding, RawRoute, RawUpstream,
};

/// Presigned links live this long unless a route says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// The whole, checked configuration the server runs on.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub listen: Vec<SocketAddr>,
    pub threads: usize,
    pub shutdown: Shutdown,
    pub routes: RouteTable<Route>,
    pub default_upstream: Option<Arc<Upstream>>,
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
    parse(&text, base, &|name| std::env::var(name).ok())
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

/// Parses and compiles YAML text; `env` looks up environment variables (passed in for tests).
pub fn parse(
    text: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ParseError> {
    let raw: RawConfig = serde_yaml::from_str(text).map_err(ParseError::Syntax)?;
    let mut compiler = Compiler {
        text,
        base,
        env,
        problems: Vec::new(),
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
    env: &'a dyn Fn(&str) -> Option<String>,
    problems: Vec<Problem>,
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
        Some(Config {
            source: PathBuf::new(),
            listen,
            threads,
            shutdown,
            routes,
            default_upstream,
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
        let credentials = match &raw.credentials {
            Some(RawCredentials {
                access_key_id,
                secret_access_key,
                session_token,
            }) => Some(Credentials::new(
                access_key_id,
                secret_access_key,
                session_token.clone(),
                None,
                "proxy.yaml",
            )),
            None => {
                let id = (self.env)("AWS_ACCESS_KEY_ID").filter(|v| !v.is_empty());
                let secret = (self.env)("AWS_SECRET_ACCESS_KEY").filter(|v| !v.is_empty());
                let token = (self.env)("AWS_SESSION_TOKEN").filter(|v| !v.is_empty());
                id.zip(secret)
                    .map(|(id, secret)| Credentials::new(id, secret, token, None, "environment"))
            }
        };
        match Bucket::new(
            &raw.bucket,
            &raw.region,
            raw.endpoint.as_deref(),
            raw.path_style,
            credentials,
        ) {
            Ok(bucket) => Some(bucket),
            Err(e) => {
                let field = match e {
                    crate::s3::BucketError::BadName(_) => "bucket",
                    crate::s3::BucketError::BadRegion(_) => "region",
                    crate::s3::BucketError::BadEndpoint(_) => "endpoint",
                };
                self.problem(&[key("buckets"), key(name), key(field)], e.to_string());
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
        let route_ttl = self.ttl(&field("ttl"), raw.ttl);
        let access = |a: RawAccess, ttl: Duration| match a {
            RawAccess::Public => Access::Public,
            RawAccess::Private => Access::Private { ttl },
        };
        // Private by default: forgetting `access:` must never publish an object.
        let default = access(raw.access.unwrap_or(RawAccess::Private), route_ttl);
        let mut policy = Policy::new(default);
        // Where to point if a private object cannot be signed: the `access:` that made it
        // private, or the route itself when private came from the default.
        let mut private_at = (default != Access::Public).then(|| match raw.access {
            Some(_) => field("access"),
            None => at.to_vec(),
        });
        for (i, rule) in raw.rules.iter().enumerate() {
            let rule_at = [at, &[key("rules"), Step::Index(i)]].concat();
            let ttl = match rule.ttl {
                Some(_) => self.ttl(&[rule_at.as_slice(), &[key("ttl")]].concat(), rule.ttl),
                None => route_ttl,
            };
            if rule.access == RawAccess::Private && private_at.is_none() {
                private_at = Some([rule_at.as_slice(), &[key("access")]].concat());
            }
            if let Err(e) = policy.add_rule(&rule.pattern, access(rule.access, ttl)) {
                self.problem(
                    &[rule_at.as_slice(), &[key("match")]].concat(),
                    e.to_string(),
                );
            }
        }
        if let (Some(b), Some(private_at)) = (&bucket, private_at) {
            if !b.can_sign() {
                self.problem(
                    &private_at,
                    format!(
                        "private objects need credentials to presign, but bucket {:?} has no `credentials:` and AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY are not set",
                        raw.bucket.as_deref().unwrap_or_default()
                    ),
                );
            }
        }
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
        })
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
