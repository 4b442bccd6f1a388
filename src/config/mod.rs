//! `proxy.yaml` → a checked, compiled [`Config`].
//!
//! Parse, then compile: `raw` mirrors the YAML with serde; `compile` checks everything that needs
//! more than one field (names that must exist, roots that must be directories, credentials a
//! private route needs), resolves host names once, opens the document roots and builds the
//! matchers. Every problem names its key path and, through `locate`, its line.

pub mod acme;
pub mod chain;
mod compile;
mod describe;
mod expand;
mod locate;
mod raw;
pub mod tls;
mod x509;

pub use describe::describe;
pub use raw::opt_bytes::parse_size;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::core::site::Site;
use crate::s3::credentials::CredentialCell;
use crate::s3::sigv4::Keys;

/// Presigned links live this long unless a route says otherwise.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);

/// How long clients and shared caches may keep a public redirect, unless a route says otherwise.
pub const DEFAULT_REDIRECT_MAX_AGE: Duration = Duration::from_secs(300);

/// The whole, checked configuration the server runs on.
#[derive(Debug)]
pub struct Config {
    pub source: PathBuf,
    pub listen: Vec<Listener>,
    pub threads: usize,
    pub shutdown: Shutdown,
    pub limits: Limits,
    /// `runtime_dir:` as configured; see [`Config::runtime_dir`].
    pub runtime_dir_setting: Option<PathBuf>,
    /// The admin listener: `/metrics`, `/healthz`, `/readyz`.
    pub admin: Option<SocketAddr>,
    pub access_log: AccessLog,
    /// The routes and upstreams: what a request is decided by.
    pub site: Site,
    /// Credentials from the AWS provider chain, when a private route uses them: the background
    /// refresher keeps them fresh for links up to `longest_ttl`.
    pub chain_credentials: Option<ChainCredentials>,
    /// The answers to open ACME challenges (empty unless a listener has `acme:`).
    pub challenges: Arc<acme::Challenges>,
    /// Where other processes sharing an HTTP-01 `acme:` block's state directory leave the
    /// answers of their open orders (`Acme::http01_dir`); empty without such a block.
    pub http01_dirs: Arc<[PathBuf]>,
}

/// One address the server listens on, plain or TLS.
#[derive(Debug, Clone)]
pub struct Listener {
    pub address: SocketAddr,
    /// With TLS: the certificates, chosen by SNI; ALPN offers h2 and http/1.1.
    pub tls: Option<Arc<tls::Certificates>>,
}

/// `access_log:`: one line per request, in a format log tools already read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLog {
    pub format: LogFormat,
    pub sink: LogSink,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line.
    Json,
    /// nginx's and Apache's `combined`.
    Combined,
    /// `key=value` pairs, as spillway's own diagnostics are written.
    Text,
    Off,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogSink {
    Stderr,
    Stdout,
    /// Appended to, and reopened on SIGUSR1 (after logrotate moves it).
    File(PathBuf),
}

impl Default for AccessLog {
    fn default() -> Self {
        AccessLog {
            format: LogFormat::Text,
            sink: LogSink::Stderr,
        }
    }
}

/// What one client may hold of the server.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open client connections at most; more are answered 503 and closed.
    pub max_connections: Option<usize>,
    /// A client that accepts nothing of a response for this long is dropped (nginx
    /// `send_timeout`), on local answers and proxied ones alike.
    pub send_timeout: Duration,
    /// An idle keep-alive connection is closed after this long, as is one that takes this long
    /// to send a request head (nginx `keepalive_timeout`, `client_header_timeout`).
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: None,
            send_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Config {
    /// Where the pid file and the upgrade socket live: `runtime_dir:`, or by default a
    /// directory of this config's own under `/run/spillway` (root), `$XDG_RUNTIME_DIR/spillway`,
    /// or `~/.local/state/spillway`. Never a shared temporary directory.
    pub fn runtime_dir(&self) -> PathBuf {
        if let Some(dir) = &self.runtime_dir_setting {
            return dir.clone();
        }
        let base = if rustix::process::geteuid().is_root() {
            PathBuf::from("/run/spillway")
        } else if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
            PathBuf::from(dir).join("spillway")
        } else {
            let home = std::env::var_os("HOME").unwrap_or_else(|| "/".into());
            PathBuf::from(home).join(".local/state/spillway")
        };
        // One directory per config file, so two instances never share a socket, and `spillway
        // reload --config` finds its server.
        let source = self
            .source
            .canonicalize()
            .unwrap_or_else(|_| self.source.clone());
        let hash = <sha2::Sha256 as sha2::Digest>::digest(source.as_os_str().as_encoded_bytes());
        let stem = source
            .file_stem()
            .map_or("spillway".into(), |s| s.to_string_lossy());
        base.join(format!("{stem}-{}", hex::encode(&hash[..4])))
    }
}

#[derive(Debug)]
pub struct ChainCredentials {
    pub cell: Arc<CredentialCell>,
    pub longest_ttl: Duration,
    /// For the chain's own calls (STS).
    pub region: String,
}

/// How a stop (SIGTERM) or an upgrade (SIGHUP) ends the old process.
#[derive(Debug, Clone, Copy)]
pub struct Shutdown {
    /// Listeners close, and requests in flight get this long to finish; the process exits as
    /// soon as its last connection ends. A minute lets ordinary downloads finish (100 MB at
    /// 15 Mbit/s) and is within what orchestrators wait (Kubernetes: 30 s, then SIGKILL; set
    /// `terminationGracePeriodSeconds` to match).
    pub grace_period: Duration,
    /// Then the worker runtimes get this long to stop.
    pub timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            grace_period: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
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

/// Why a config file cannot be used. Each message names its cause once: the cause is part of
/// the text, not a `source()` that a printer of error chains would repeat.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// serde_yaml's message already carries the key path and line.
    #[error("{}: {error}", path.display())]
    Syntax {
        path: PathBuf,
        error: serde_yaml::Error,
    },
    #[error("{}", render_problems(path, problems))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

/// Reads, parses and compiles a config file. Relative roots resolve against its directory.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base, &Environment::process())
        .map(|mut c| {
            c.source = path.to_owned();
            c
        })
        .map_err(|e| match e {
            ParseError::Syntax(error) => ConfigError::Syntax {
                path: path.to_owned(),
                error,
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
    /// Environment variables, for `${VAR}` in credentials (see `expand`).
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
            chain: &chain::fetch_from_chain_blocking,
        }
    }
}

/// Parses and compiles YAML text; relative roots resolve against `base`.
pub fn parse(text: &str, base: &Path, env: &Environment) -> Result<Config, ParseError> {
    let raw: raw::RawConfig = serde_yaml::from_str(text).map_err(ParseError::Syntax)?;
    compile::compile(raw, text, base, env).map_err(ParseError::Invalid)
}

/// One line per problem, each naming the file, so every line can be jumped to.
fn render_problems(path: &Path, problems: &[Problem]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| format!("{}: {p}", path.display()))
        .collect();
    lines.join("\n")
}
