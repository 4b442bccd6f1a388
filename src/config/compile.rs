//! Compiling the raw YAML mirror into a checked [`Config`]: names that must exist, roots that
//! must be directories, credentials a private route needs, host names resolved once. Every
//! problem is collected with its key path and line, so all of them are reported at once.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::acme::{self, Acme, ChallengeKind, Challenges};
use super::expand::expand;
use super::locate::{self, Step};
use super::raw::{
    AllowDeny, Listen, RawAccess, RawAccessLog, RawAcme, RawAfter, RawAppliesTo, RawAuthorize,
    RawBucket, RawChallenge, RawCloudFront, RawCloudFrontPolicy, RawCompress, RawConfig, RawCors,
    RawCredentials, RawDisposition, RawEncoding, RawLimits, RawLogFormat, RawOffload,
    RawOpenFileCache, RawRate, RawRateKey, RawRoute, RawTls, RawUpstream,
};
use super::tls::{self, Certificates};
use super::{
    AccessLog, ChainCredentials, Config, Environment, Limits, Listener, LogFormat, LogSink,
    Problem, Shutdown, DEFAULT_REDIRECT_MAX_AGE, DEFAULT_TTL,
};
use crate::core::authorize::{AppliesTo, Authorize, SET_BY_SPILLWAY};
use crate::core::compress::Compress;
use crate::core::cors::{Cors, Origins};
use crate::core::limits::UpstreamLimits;
use crate::core::policy::{Access, Policy, Signing};
use crate::core::rate::RateLimit;
use crate::core::route::RouteTable;
use crate::core::site::{After, Dotfiles, Offload, Route, Site};
use crate::core::upstream::Upstream;
use crate::fs::docroot::Docroot;
use crate::fs::open_cache::CacheSettings;
use crate::http::negotiate::Encoding;
use crate::s3::cloudfront::{CloudFront, CookieScope, PolicyKind, SigningKey};
use crate::s3::credentials::CredentialCell;
use crate::s3::sigv4::Keys;
use crate::s3::{Addressing, Bucket, BucketError, MAX_SINGLE_PUT, MAX_TTL, MIN_PART};

/// How long an authorization check may take, unless the route says otherwise.
const DEFAULT_AUTHORIZE_TIMEOUT: Duration = Duration::from_secs(2);

/// Headers about the client's connection, never about the request: not for an endpoint.
const HOP_BY_HOP: [&str; 8] = [
    "host",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
];

/// Compiled buckets or upstreams, by the name the config gives them.
type ByName<'a, T> = BTreeMap<&'a str, Arc<T>>;

/// The longest `open_file_cache.valid`: nginx's usual 60 s.
const MAX_CACHE_VALID: Duration = Duration::from_secs(60);

/// Compiles `raw` (parsed from `text`, with relative paths against `base`).
pub fn compile(
    raw: RawConfig,
    text: &str,
    base: &Path,
    env: &Environment,
) -> Result<Config, Vec<Problem>> {
    let mut compiler = Compiler {
        text,
        base,
        env,
        problems: Vec::new(),
        chain_cell: Arc::new(CredentialCell::for_chain()),
        chain_buckets: Vec::new(),
        chain_users: Vec::new(),
        chain_region: String::new(),
        open_file_cache: CacheSettings::default(),
        challenges: Arc::new(Challenges::default()),
        http01_listeners: Vec::new(),
    };
    let config = compiler.compile(raw);
    if compiler.problems.is_empty() {
        Ok(config)
    } else {
        Err(compiler.problems)
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
    /// What every route's root remembers of its lookups.
    open_file_cache: CacheSettings,
    /// The answers to ACME challenges, for every `acme:` listener of the process.
    challenges: Arc<Challenges>,
    /// Where an `acme:` block asks for HTTP-01, which needs a plain listener.
    http01_listeners: Vec<Vec<Step>>,
}

/// Where the HTTP-01 `acme:` blocks of `listen` share their open answers, once each.
fn http01_dirs(listen: &[Listener]) -> Arc<[PathBuf]> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let blocks = listen.iter().filter_map(|l| l.tls.as_ref()?.acme.as_ref());
    for acme in blocks.filter(|a| a.challenge == ChallengeKind::Http01) {
        let dir = acme.http01_dir();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    dirs.into()
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

    // Long on purpose: the top-level keys in the order of the reference; each delegates to its
    // own method.
    fn compile(&mut self, raw: RawConfig) -> Config {
        let listen = self.listen(&raw.listen);
        if listen.iter().all(|l| l.tls.is_some()) {
            for at in std::mem::take(&mut self.http01_listeners) {
                let message = "http-01 is answered on a plain listener (the CA asks on port 80), \
                               and every listener here has TLS: add one, like \"0.0.0.0:80\", or \
                               set `challenge: tls-alpn-01`";
                self.problem(&at, message);
            }
        }
        let http01_dirs = http01_dirs(&listen);
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
            let at = [key("default_upstream")];
            self.reference(&at, "upstream", name, &upstreams, &raw.upstreams)
        });
        if raw.routes.is_empty() && default_upstream.is_none() {
            self.problem(
                &[key("routes")],
                "no routes and no default_upstream: nothing to serve",
            );
        }
        self.open_file_cache = self.open_file_cache(&raw.open_file_cache);
        let routes = self.routes(&raw, &upstreams);
        let chain_credentials = self.resolve_chain();
        let limits = self.limits(&raw.limits);
        let admin = raw
            .admin
            .as_deref()
            .and_then(|address| match resolve(address) {
                Ok(addresses) => Some(addresses[0]),
                Err(e) => {
                    self.problem(&[key("admin")], e);
                    None
                }
            });
        let access_log = self.access_log(&raw.access_log);
        Config {
            source: PathBuf::new(),
            listen,
            threads,
            shutdown,
            limits,
            runtime_dir_setting: raw.runtime_dir.as_ref().map(|d| self.base.join(d)),
            admin,
            access_log,
            site: Site {
                routes,
                default_upstream,
                limits: self.upstream_limits(
                    &[key("limits")],
                    (raw.limits.max_body, raw.limits.max_inflight),
                    raw.limits.rate.as_ref(),
                ),
                trusted_proxies: self.trusted_proxies(&raw.trusted_proxies),
                compress: raw
                    .compress
                    .as_ref()
                    .map(|c| Arc::new(self.compress(&[key("compress")], c))),
            },
            chain_credentials,
            challenges: Arc::clone(&self.challenges),
            http01_dirs,
        }
    }

    /// What `name` refers to among the `kind`s (`upstream`, `bucket`): a name that is not
    /// defined is a problem; one defined but broken was reported where it is defined.
    fn reference<T: Clone, R>(
        &mut self,
        at: &[Step],
        kind: &str,
        name: &str,
        compiled: &BTreeMap<&str, T>,
        defined: &BTreeMap<String, R>,
    ) -> Option<T> {
        let found = compiled.get(name).cloned();
        if found.is_none() && !defined.contains_key(name) {
            self.problem(
                at,
                format!(
                    "unknown {kind} {name:?} (defined: {})",
                    names(defined.keys())
                ),
            );
        }
        found
    }

    /// The route table, with the buckets its routes refer to.
    fn routes(
        &mut self,
        raw: &RawConfig,
        upstreams: &BTreeMap<&str, Arc<Upstream>>,
    ) -> RouteTable<Route> {
        let buckets: BTreeMap<&str, Arc<Bucket>> = raw
            .buckets
            .iter()
            .filter_map(|(name, b)| Some((name.as_str(), Arc::new(self.bucket(name, b)?))))
            .collect();
        let mut routes = RouteTable::default();
        for (index, r) in raw.routes.iter().enumerate() {
            let at = [key("routes"), Step::Index(index)];
            let Some(route) = self.route(&at, r, raw, (&buckets, upstreams)) else {
                continue;
            };
            if let Err(e) = routes.insert(&r.prefix, route) {
                self.problem(
                    &[at[0].clone(), at[1].clone(), key("prefix")],
                    format!("{:?} {e}", r.prefix),
                );
            }
        }
        routes
    }

    fn listen(&mut self, listen: &Listen) -> Vec<Listener> {
        if listen.entries.is_empty() {
            self.problem(&[key("listen")], "needs at least one address");
        }
        let mut all = Vec::new();
        for (i, entry) in listen.entries.iter().enumerate() {
            let at: Vec<Step> = match listen.is_list {
                true => vec![key("listen"), Step::Index(i)],
                false => vec![key("listen")],
            };
            // A plain string is located at the entry itself; a map at its `address:`.
            let address_at = match entry.tls {
                Some(_) => [at.as_slice(), &[key("address")]].concat(),
                None => at.clone(),
            };
            let tls = entry
                .tls
                .as_ref()
                .and_then(|tls| self.certificates(&[at.as_slice(), &[key("tls")]].concat(), tls));
            match resolve(&entry.address) {
                Ok(addresses) => {
                    for address in addresses {
                        // Two listeners on one address would both bind it; say so now. Port 0
                        // may repeat: `check` and `explain` take it (`run` refuses it).
                        if address.port() != 0
                            && all.iter().any(|l: &Listener| l.address == address)
                        {
                            self.problem(
                                &address_at,
                                format!("{address} is already a listener above; give each listener its own port"),
                            );
                            continue;
                        }
                        all.push(Listener {
                            address,
                            tls: tls.clone(),
                        });
                    }
                }
                Err(e) => self.problem(&address_at, e),
            }
        }
        all
    }

    /// A TLS listener's certificates: files, each read and checked now, or `acme:` settings
    /// and the certificate stored for them, if any.
    fn certificates(&mut self, at: &[Step], raw: &RawTls) -> Option<Arc<Certificates>> {
        let (cert, key_path) = match (&raw.acme, &raw.cert, &raw.key) {
            (Some(acme), None, None) => {
                let at = [at, &[key("acme")]].concat();
                if !raw.sni.is_empty() {
                    let message = "lists static certificates, and `acme:` issues one for all of \
                                   `acme.domains`: list every name there instead";
                    self.problem(&[at.as_slice(), &[key("sni")]].concat(), message);
                }
                return self.acme(&at, acme);
            }
            (Some(_), _, _) => {
                let message = "names both files (`cert:`, `key:`) and `acme:`; keep one of them";
                self.problem(at, message);
                return None;
            }
            (None, Some(cert), Some(key_path)) => (cert, key_path),
            (None, _, _) => {
                let message = "needs `cert:` and `key:` (PEM files), or `acme:` (certificates \
                               from an ACME CA such as Let's Encrypt)";
                self.problem(at, message);
                return None;
            }
        };
        let mut load = |at: Vec<Step>, cert: &str, key_path: &str| match tls::load(
            &self.base.join(cert),
            &self.base.join(key_path),
        ) {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                let field = match e {
                    tls::CertError::Key { .. } | tls::CertError::Mismatch { .. } => "key",
                    _ => "cert",
                };
                self.problem(&[at.as_slice(), &[key(field)]].concat(), e.to_string());
                None
            }
        };
        let default = load(at.to_vec(), cert, key_path);
        let more: Vec<_> = raw
            .sni
            .iter()
            .enumerate()
            .map(|(i, c)| {
                load(
                    [at, &[key("sni"), Step::Index(i)]].concat(),
                    &c.cert,
                    &c.key,
                )
            })
            .collect();
        let more: Option<Vec<_>> = more.into_iter().collect();
        Some(Arc::new(Certificates::new(default?, more?)))
    }

    /// `tls.acme:`, checked, with the certificate its state directory holds for it, if any.
    fn acme(&mut self, at: &[Step], raw: &RawAcme) -> Option<Arc<Certificates>> {
        let before = self.problems.len();
        let within = |field: &str| [at, &[key(field)]].concat();
        if raw.domains.is_empty() {
            self.problem(
                &within("domains"),
                "needs at least one name to issue a certificate for",
            );
        }
        for (i, domain) in raw.domains.iter().enumerate() {
            if let Err(e) = acme::check_domain(domain) {
                self.problem(
                    &[within("domains").as_slice(), &[Step::Index(i)]].concat(),
                    e,
                );
            }
        }
        let contact = raw
            .contact
            .as_ref()
            .map(|c| c.0.clone())
            .unwrap_or_default();
        for address in &contact {
            if !address.starts_with("mailto:") || address.len() == "mailto:".len() {
                let message = format!(
                    "{address:?} is not a `mailto:` address (like mailto:ops@example.com), the \
                     only contact ACME CAs take"
                );
                self.problem(&within("contact"), message);
            }
        }
        let directory = raw
            .directory
            .clone()
            .unwrap_or_else(|| acme::LETS_ENCRYPT.to_owned());
        if !directory.starts_with("https://") {
            let message = format!(
                "{directory:?} is not an https:// URL; ACME directories are served over HTTPS \
                 (Let's Encrypt's is {})",
                acme::LETS_ENCRYPT
            );
            self.problem(&within("directory"), message);
        }
        let state_dir = self.base.join(&raw.state_dir);
        if acme::not_a_directory(&state_dir) {
            let message = format!(
                "{} exists and is not a directory; name a directory for the account key and \
                 certificates (it is made if missing)",
                state_dir.display()
            );
            self.problem(&within("state_dir"), message);
        }
        let directory_ca = raw.directory_ca.as_ref().map(|ca| self.base.join(ca));
        if let Some(ca) = &directory_ca {
            use rustls::pki_types::pem::PemObject;
            if let Err(e) = rustls::pki_types::CertificateDer::from_pem_file(ca) {
                let message = format!(
                    "cannot read a CA certificate from {}: {}",
                    ca.display(),
                    tls::pem_error(&e)
                );
                self.problem(&within("directory_ca"), message);
            }
        }
        let challenge = match raw.challenge {
            None | Some(RawChallenge::Http01) => ChallengeKind::Http01,
            Some(RawChallenge::TlsAlpn01) => ChallengeKind::TlsAlpn01,
        };
        if challenge == ChallengeKind::Http01 {
            // Located at `challenge:` when written, else at the `acme:` block.
            let written = raw.challenge.map(|_| within("challenge"));
            self.http01_listeners
                .push(written.unwrap_or_else(|| at.to_vec()));
        }
        if self.problems.len() > before {
            return None;
        }
        let settings = Acme {
            domains: raw.domains.clone(),
            contact,
            directory,
            state_dir,
            challenge,
            directory_ca,
            challenges: Arc::clone(&self.challenges),
        };
        let stored = settings.stored(std::time::SystemTime::now()).ok();
        Some(Arc::new(Certificates::from_acme(
            settings,
            stored.map(|issued| issued.key),
        )))
    }

    fn access_log(&mut self, raw: &RawAccessLog) -> AccessLog {
        let format = match raw.format {
            None | Some(RawLogFormat::Text) => LogFormat::Text,
            Some(RawLogFormat::Json) => LogFormat::Json,
            Some(RawLogFormat::Combined) => LogFormat::Combined,
            Some(RawLogFormat::Off) => LogFormat::Off,
        };
        let sink = match raw.path.as_deref() {
            None | Some("stderr") => LogSink::Stderr,
            Some("stdout") => LogSink::Stdout,
            Some(path) => {
                let path = self.base.join(path);
                let parent_ok = match path.parent() {
                    Some(parent) if parent.as_os_str().is_empty() => true,
                    Some(parent) => parent.is_dir(),
                    None => false,
                };
                if !parent_ok {
                    self.problem(
                        &[key("access_log"), key("path")],
                        format!("{} is not in an existing directory", path.display()),
                    );
                }
                LogSink::File(path)
            }
        };
        AccessLog { format, sink }
    }

    fn open_file_cache(&mut self, raw: &RawOpenFileCache) -> CacheSettings {
        let defaults = CacheSettings::default();
        let valid = raw.valid.unwrap_or(defaults.valid);
        if valid > MAX_CACHE_VALID {
            self.problem(
                &[key("open_file_cache"), key("valid")],
                "must be at most 60s: a deleted or replaced file is served that long",
            );
        }
        CacheSettings {
            entries: raw.entries.unwrap_or(defaults.entries),
            valid,
        }
    }

    fn limits(&mut self, raw: &RawLimits) -> Limits {
        let defaults = Limits::default();
        if raw.max_connections == Some(0) {
            self.problem(
                &[key("limits"), key("max_connections")],
                "must be at least 1",
            );
        }
        for (name, value) in [
            ("send_timeout", raw.send_timeout),
            ("idle_timeout", raw.idle_timeout),
        ] {
            if value.is_some_and(|d| d < Duration::from_secs(1)) {
                self.problem(&[key("limits"), key(name)], "must be at least 1s");
            }
        }
        Limits {
            max_connections: raw.max_connections,
            send_timeout: raw.send_timeout.unwrap_or(defaults.send_timeout),
            idle_timeout: raw.idle_timeout.unwrap_or(defaults.idle_timeout),
        }
    }

    /// `max_body`, `max_inflight` and `rate`, for a route or the default upstream.
    fn upstream_limits(
        &mut self,
        at: &[Step],
        (max_body, max_inflight): (Option<u64>, Option<usize>),
        rate: Option<&RawRate>,
    ) -> Arc<UpstreamLimits> {
        if max_inflight == Some(0) {
            let at = [at, &[key("max_inflight")]].concat();
            self.problem(&at, "must be at least 1 (leave it out for no limit)");
        }
        let rate = rate.and_then(|rate| self.rate(&[at, &[key("rate")]].concat(), rate));
        Arc::new(UpstreamLimits::new(max_body, max_inflight, rate))
    }

    /// `rate: {requests, per, burst, key}`: a budget of `burst` (default `requests`) that
    /// refills at `requests` per `per`.
    fn rate(&mut self, at: &[Step], raw: &RawRate) -> Option<RateLimit> {
        let field = |name: &str| [at, &[key(name)]].concat();
        let RawRateKey::ClientIp = raw.key;
        let per = raw.per.unwrap_or_default();
        let mut fine = true;
        if raw.requests == 0 {
            self.problem(&field("requests"), "must be at least 1");
            fine = false;
        }
        if !(Duration::from_millis(1)..=Duration::from_secs(86_400)).contains(&per) {
            self.problem(&field("per"), "must be between 1ms and 24h");
            fine = false;
        }
        let burst = raw.burst.unwrap_or(raw.requests);
        if raw.burst == Some(0) {
            self.problem(
                &field("burst"),
                "must be at least 1 (the requests allowed at once)",
            );
            fine = false;
        }
        fine.then(|| RateLimit::new(raw.requests, per, burst))
    }

    /// `compress:`, over the defaults: zstd, br, gzip; 1 KiB; text, JSON, JavaScript, XML, SVG.
    fn compress(&mut self, at: &[Step], raw: &RawCompress) -> Compress {
        let encodings = raw
            .encodings
            .as_deref()
            .unwrap_or(&[RawEncoding::Zstd, RawEncoding::Br, RawEncoding::Gzip])
            .iter()
            .map(|e| match e {
                RawEncoding::Br => Encoding::Br,
                RawEncoding::Zstd => Encoding::Zstd,
                RawEncoding::Gzip => Encoding::Gzip,
            })
            .collect::<Vec<_>>();
        if encodings.is_empty() {
            self.problem(
                &[at, &[key("encodings")]].concat(),
                "names no coding: leave `compress:` out to compress nothing",
            );
        }
        let defaults = [
            "text/*",
            "application/json",
            "application/javascript",
            "application/xml",
            "image/svg+xml",
        ];
        let types: Vec<String> = match &raw.types {
            Some(types) => types
                .iter()
                .map(|t| t.trim().to_ascii_lowercase())
                .collect(),
            None => defaults.iter().map(|t| (*t).to_owned()).collect(),
        };
        if types.is_empty() {
            self.problem(
                &[at, &[key("types")]].concat(),
                "names no media type: leave `types:` out for the defaults",
            );
        }
        for (i, t) in types.iter().enumerate() {
            let family = t.strip_suffix("/*");
            let valid = match family {
                Some(family) => !family.is_empty() && !family.contains(['/', '*']),
                None => {
                    t.split('/').count() == 2
                        && !t.contains(['*', ';', ' '])
                        && !t.starts_with('/')
                        && !t.ends_with('/')
                }
            };
            if !valid {
                self.problem(
                    &[at, &[key("types"), Step::Index(i)]].concat(),
                    format!("{t:?} is not a media type (text/html) or a family (text/*)"),
                );
            }
        }
        Compress {
            encodings,
            min_length: raw.min_length.unwrap_or(1024),
            types,
        }
    }

    /// `trusted_proxies:`: addresses or networks (`10.0.0.0/8`, `192.0.2.7`, `2001:db8::/32`).
    fn trusted_proxies(&mut self, raw: &[String]) -> Vec<ipnet::IpNet> {
        let mut nets = Vec::new();
        for (i, text) in raw.iter().enumerate() {
            let parsed = text
                .parse::<ipnet::IpNet>()
                .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(net) => nets.push(net),
                Err(_) => self.problem(
                    &[key("trusted_proxies"), Step::Index(i)],
                    format!("{text:?} is not an address or a network like 10.0.0.0/8"),
                ),
            }
        }
        nets
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
                // A CloudFront bucket's links are signed with its key pair: the server never
                // needs AWS credentials for it (offload finds its own).
                if raw.cloudfront.is_none() {
                    self.chain_buckets.push(name.to_owned());
                }
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
        let cloudfront = match &raw.cloudfront {
            Some(cf) => Some(self.cloudfront(name, cf, raw.public_url.as_deref())?),
            None => None,
        };
        let bucket =
            Bucket::new(&raw.bucket, &raw.region, &addressing, credentials).and_then(|bucket| {
                match cloudfront {
                    Some(cf) => bucket.with_cloudfront(cf),
                    None => Ok(bucket),
                }
            });
        match bucket {
            Ok(bucket) => Some(bucket),
            Err(e) => {
                let field = match e {
                    BucketError::BadName(_) => "bucket",
                    BucketError::BadRegion(_) => "region",
                    BucketError::BadEndpoint(_) | BucketError::AwsOnly => "endpoint",
                    BucketError::VirtualHostNeedsName => "path_style",
                    BucketError::BadPublicUrl(_) => "public_url",
                    BucketError::AccelerateNeedsVirtualHost => "accelerate",
                    BucketError::CloudFrontNeedsPublicUrl => "cloudfront",
                };
                self.problem(&at(field), e.to_string());
                None
            }
        }
    }

    /// `buckets.NAME.cloudfront:`, its key read and checked now.
    fn cloudfront(
        &mut self,
        bucket: &str,
        raw: &RawCloudFront,
        public_url: Option<&str>,
    ) -> Option<CloudFront> {
        let at = |field: &str| [key("buckets"), key(bucket), key("cloudfront"), key(field)];
        let before = self.problems.len();
        let id = &raw.key_pair_id;
        let valid_id = !id.is_empty()
            && id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if !valid_id {
            let message = format!(
                "{id:?} is not a CloudFront key id (capital letters and digits, like \
                 K2JCJMDEHXQW5F: the ID of the public key in CloudFront's key group)"
            );
            self.problem(&at("key_pair_id"), message);
        }
        let key = match SigningKey::from_pem_file(&self.base.join(&raw.private_key)) {
            Ok(key) => Some(key),
            Err(e) => {
                self.problem(&at("private_key"), e.to_string());
                None
            }
        };
        let custom = raw.policy == Some(RawCloudFrontPolicy::Custom);
        if !custom && (raw.ip_range.is_some() || raw.not_before.is_some()) {
            let field = if raw.ip_range.is_some() {
                "ip_range"
            } else {
                "not_before"
            };
            let message = "is a condition of a custom policy: set `policy: custom` (a canned \
                           policy has an expiry only)";
            self.problem(&at(field), message);
        }
        // A bare address is a range of one (`/32`).
        let ip_range = raw.ip_range.as_ref().and_then(|range| {
            let parsed = range
                .parse::<ipnet::IpNet>()
                .or_else(|_| range.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
            match parsed {
                Ok(ipnet::IpNet::V6(_)) => {
                    let message = format!(
                        "{range:?} is an IPv6 range: CloudFront's IpAddress condition takes IPv4 \
                         only (and a distribution restricted by address should not enable IPv6)"
                    );
                    self.problem(&at("ip_range"), message);
                    None
                }
                // The network itself (`203.0.113.5/24` is 203.0.113.0/24), as CloudFront reads it.
                Ok(net) => Some(net.trunc().to_string()),
                Err(_) => {
                    let message =
                        format!("{range:?} is not an address or a range like 203.0.113.0/24");
                    self.problem(&at("ip_range"), message);
                    None
                }
            }
        });
        let cookies = match (raw.cookies.unwrap_or(false), &raw.cookie_domain) {
            (false, None) => None,
            (false, Some(_)) => {
                self.problem(
                    &at("cookie_domain"),
                    "is for `cookies: true`, which is not set",
                );
                None
            }
            (true, None) => {
                let message = "needs `cookie_domain:`: a domain both this site and the \
                               distribution are in (like example.com for www.example.com and \
                               cdn.example.com), or browsers refuse the cookies";
                self.problem(&at("cookies"), message);
                None
            }
            (true, Some(domain)) => {
                let host = public_url
                    .and_then(|u| u.split_once("://"))
                    .map(|(_, rest)| rest.split(['/', ':']).next().unwrap_or(""))
                    .unwrap_or("");
                let within = host == domain || host.ends_with(&format!(".{domain}"));
                if !domain.contains('.') {
                    let message = format!(
                        "{domain:?} is not a domain browsers take cookies for (a registered \
                         name with a dot, like example.com)"
                    );
                    self.problem(&at("cookie_domain"), message);
                } else if !within {
                    let message = format!(
                        "{domain:?} does not contain the distribution's host {host:?}: browsers \
                         send cookies for a domain only to hosts in it (give the distribution \
                         an alternate domain name in your site, like cdn.example.com)"
                    );
                    self.problem(&at("cookie_domain"), message);
                }
                Some(CookieScope {
                    domain: domain.clone(),
                })
            }
        };
        if self.problems.len() > before {
            return None;
        }
        let policy = match custom {
            false => PolicyKind::Canned,
            true => PolicyKind::Custom {
                ip_range,
                not_before: raw.not_before.unwrap_or(false),
            },
        };
        Some(CloudFront {
            key_pair_id: id.clone(),
            key: key?,
            policy,
            cookies,
        })
    }

    /// Keys written in the YAML, with `${VAR}` expanded from the environment.
    fn explicit_keys(&mut self, bucket: &str, raw: &RawCredentials) -> Option<Keys> {
        let mut expanded = |field: &str, value: &str| {
            let at = [key("buckets"), key(bucket), key("credentials"), key(field)];
            match expand(value, self.env.var) {
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
        let id = expanded("access_key_id", &raw.access_key_id);
        let secret = expanded("secret_access_key", &raw.secret_access_key);
        let token = match &raw.session_token {
            Some(t) => Some(expanded("session_token", t)?),
            None => None,
        };
        Some(Keys::new(id?, secret?, token, None, "`credentials:`"))
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

    // Long on purpose: one pass over a route's keys in the order of the reference, each checked where it is read, so every problem is found in one run.
    fn route(
        &mut self,
        at: &[Step],
        raw: &RawRoute,
        config: &RawConfig,
        (buckets, upstreams): (&ByName<Bucket>, &ByName<Upstream>),
    ) -> Option<Route> {
        let field = |k: &str| [at, &[key(k)]].concat();
        let docroot = self.docroot(&field("root"), raw);
        let bucket = raw.bucket.as_deref().and_then(|name| {
            self.reference(&field("bucket"), "bucket", name, buckets, &config.buckets)
        });
        let upstream = raw.upstream.as_deref().and_then(|name| {
            self.reference(
                &field("upstream"),
                "upstream",
                name,
                upstreams,
                &config.upstreams,
            )
        });
        if raw.shadow && upstream.is_none() && config.default_upstream.is_none() {
            self.problem(
                &field("shadow"),
                "needs an upstream to send everything to (the route's upstream or default_upstream)",
            );
        }
        // A signed cookie opens the object's directory and everything below it: no per-object
        // check could say no to the objects it opens.
        let cookies = bucket
            .as_ref()
            .and_then(|b| b.cloudfront())
            .is_some_and(|c| c.cookies.is_some());
        let checked = raw.authorize.is_some() || raw.rules.iter().any(|r| r.authorize.is_some());
        if cookies && checked {
            let at = match raw.authorize {
                Some(_) => field("authorize"),
                None => field("rules"),
            };
            let message = format!(
                "asks the application about each object, but bucket {:?} sets CloudFront signed \
                 cookies, which open the object's whole directory, subdirectories included; \
                 drop `cookies: true` there, or the check here",
                raw.bucket.as_deref().unwrap_or_default()
            );
            self.problem(&at, message);
        }
        let authorize = raw.authorize.as_ref().and_then(|check| {
            let at = field("authorize");
            self.authorize(&at, check, raw.bucket.is_some(), (upstreams, config))
        });
        let authorize_by_rule = raw
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let check = rule.authorize.as_ref()?;
                let at = [at, &[key("rules"), Step::Index(i), key("authorize")]].concat();
                self.authorize(&at, check, raw.bucket.is_some(), (upstreams, config))
            })
            .collect();
        if raw.key_prefix.starts_with('/') {
            self.problem(
                &field("key_prefix"),
                "must not start with '/' (S3 keys have no leading slash)",
            );
        }
        let policy = self.policy(at, raw);
        let max_age = raw
            .redirect_max_age
            .unwrap_or(DEFAULT_REDIRECT_MAX_AGE)
            .as_secs();
        let redirect_cache_control =
            http::HeaderValue::from_str(&format!("public, max-age={max_age}"))
                .unwrap_or(http::HeaderValue::from_static("public"));
        self.index(&field("index"), &raw.index);
        // Only a route that asks is offloaded: `offload:` (even empty) opts it in.
        let offload = raw
            .offload
            .as_ref()
            .map(|offload| self.offload(&field("offload"), raw, offload));
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
        let cors = raw
            .cors
            .as_ref()
            .and_then(|cors| self.cors(&field("cors"), cors));
        let limits = raw.limits.as_ref().map(|limits| {
            self.upstream_limits(
                &field("limits"),
                (limits.max_body, limits.max_inflight),
                limits.rate.as_ref(),
            )
        });
        // A route answers its GETs and HEADs itself; only bodies and shadow traffic go upstream,
        // on Pingora's path, which does not compress: a route's `compress:` would promise
        // what never happens.
        if raw.compress.is_some() {
            self.problem(
                &field("compress"),
                "a route answers its own GETs: `compress:` applies to the default upstream's pages, at the top level",
            );
        }
        Some(Route {
            id: at
                .iter()
                .find_map(|step| match step {
                    Step::Index(i) => Some(*i),
                    Step::Key(_) => None,
                })
                .unwrap_or(0),
            prefix: raw.prefix.clone(),
            docroot: Arc::new(docroot?),
            bucket,
            bucket_name: raw.bucket.clone(),
            upstream,
            authorize,
            authorize_by_rule,
            shadow: raw.shadow,
            key_prefix: raw.key_prefix.clone(),
            policy,
            index: raw.index.clone(),
            precompressed,
            cache_control,
            dotfiles: match raw.dotfiles {
                Some(AllowDeny::Allow) => Dotfiles::Allow,
                _ => Dotfiles::Deny,
            },
            redirect_cache_control,
            offload,
            cors,
            limits,
        })
    }

    /// A route's `cors:` block: origins as browsers send them, the methods it answers itself.
    fn cors(&mut self, at: &[Step], raw: &RawCors) -> Option<Cors> {
        let field = |name: &str| [at, &[key(name)]].concat();
        let any = raw.origins.iter().any(|o| o == "*");
        let origins = match (raw.origins.len(), any) {
            (0, _) => {
                self.problem(
                    &field("origins"),
                    "needs at least one origin, or \"*\" for any",
                );
                return None;
            }
            (1, true) => Origins::Any,
            (_, true) => {
                self.problem(
                    &field("origins"),
                    "\"*\" already allows every origin: list origins or \"*\", not both",
                );
                return None;
            }
            (_, false) => {
                for (i, origin) in raw.origins.iter().enumerate() {
                    if let Err(why) = serialized_origin(origin) {
                        let at = [field("origins").as_slice(), &[Step::Index(i)]].concat();
                        self.problem(&at, format!("{origin:?} {why}"));
                    }
                }
                Origins::Listed(raw.origins.clone())
            }
        };
        let mut methods = Vec::new();
        let named = raw
            .methods
            .clone()
            .unwrap_or_else(|| vec!["GET".into(), "HEAD".into()]);
        for (i, method) in named.iter().enumerate() {
            match method.to_ascii_uppercase().as_str() {
                "GET" => methods.push(Method::GET),
                "HEAD" => methods.push(Method::HEAD),
                _ => {
                    let at = [field("methods").as_slice(), &[Step::Index(i)]].concat();
                    self.problem(&at, format!("{method:?}: only GET and HEAD, which the route answers itself; the upstream application answers the preflights for its own methods"));
                }
            }
        }
        let mut headers = Vec::new();
        for (i, name) in raw.headers.iter().enumerate() {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) => headers.push(name),
                Err(_) => {
                    let at = [field("headers").as_slice(), &[Step::Index(i)]].concat();
                    self.problem(&at, format!("{name:?} is not a header field name"));
                }
            }
        }
        Some(Cors {
            origins,
            methods,
            headers,
            max_age: raw.max_age.unwrap_or(DEFAULT_CORS_MAX_AGE),
        })
    }

    // Long on purpose: an `authorize:` block's keys checked in the order of the reference.
    /// A route's authorization check.
    fn authorize(
        &mut self,
        at: &[Step],
        raw: &RawAuthorize,
        has_bucket: bool,
        (upstreams, config): (&ByName<Upstream>, &RawConfig),
    ) -> Option<Authorize> {
        let field = |k: &str| [at, &[key(k)]].concat();
        let upstream = self.reference(
            &field("upstream"),
            "upstream",
            &raw.upstream,
            upstreams,
            &config.upstreams,
        );
        if !raw.path.starts_with('/') || raw.path.parse::<http::uri::PathAndQuery>().is_err() {
            self.problem(
                &field("path"),
                format!("{:?} must be a path starting with '/'", raw.path),
            );
        }
        let mut forward = Vec::new();
        for (i, name) in raw.forward.iter().enumerate() {
            let at = [field("forward"), vec![Step::Index(i)]].concat();
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(name) if SET_BY_SPILLWAY.contains(&name.as_str()) => {
                    self.problem(&at, format!("{name} is set by spillway, never forwarded"))
                }
                Ok(name) if HOP_BY_HOP.contains(&name.as_str()) => self.problem(
                    &at,
                    format!("{name} describes the client's connection; it cannot be forwarded"),
                ),
                Ok(name) => forward.push(name),
                Err(_) => self.problem(&at, format!("{name:?} is not a header name")),
            }
        }
        let timeout = raw.timeout.unwrap_or(DEFAULT_AUTHORIZE_TIMEOUT);
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&timeout) {
            self.problem(&field("timeout"), "must be between 100ms and 60s");
        }
        let cache = raw.cache.unwrap_or(Duration::ZERO);
        if cache > Duration::from_secs(3600) {
            self.problem(&field("cache"), "must be at most 1h");
        }
        let applies_to = match raw.applies_to {
            Some(RawAppliesTo::All) => AppliesTo::All,
            Some(RawAppliesTo::Private) | None => AppliesTo::Private,
        };
        if applies_to == AppliesTo::Private && !has_bucket {
            self.problem(
                at,
                "applies to presigned redirects only, and this route has no bucket: \
                 set applies_to: all to check its local files",
            );
        }
        Some(Authorize {
            upstream: upstream?,
            path: raw.path.clone(),
            forward,
            timeout,
            cache,
            applies_to,
        })
    }

    /// Opens the route's root once, for every lookup beneath it.
    fn docroot(&mut self, at: &[Step], raw: &RawRoute) -> Option<Docroot> {
        let path = self.base.join(&raw.root);
        let follow_symlinks = raw.symlinks != Some(AllowDeny::Deny);
        match Docroot::open(&path, follow_symlinks, self.open_file_cache) {
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(
                    at,
                    format!("cannot open {} as a directory: {e}", path.display()),
                );
                None
            }
        }
    }

    /// The route's access policy: its default, then its rules in order. Private access that
    /// signs with chain credentials is noted, so the chain is asked only if something needs it.
    fn policy(&mut self, at: &[Step], raw: &RawRoute) -> Policy {
        let field = |k: &str| [at, &[key(k)]].concat();
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
        policy
    }

    /// The route's `offload:` block, over the defaults.
    fn offload(&mut self, at: &[Step], route: &RawRoute, raw: &RawOffload) -> Offload {
        let field = |k: &str| [at, &[key(k)]].concat();
        let defaults = Offload::default();
        if route.bucket.is_none() {
            self.problem(at, "needs a bucket on the route: offload moves files to it");
        }
        let concurrency = raw.concurrency.unwrap_or(defaults.concurrency);
        if !(1..=256).contains(&concurrency) {
            self.problem(&field("concurrency"), "must be between 1 and 256");
        }
        let multipart_threshold = raw
            .multipart_threshold
            .unwrap_or(defaults.multipart_threshold);
        if !(MIN_PART..=MAX_SINGLE_PUT).contains(&multipart_threshold) {
            self.problem(
                &field("multipart_threshold"),
                "must be between 5MiB (S3's smallest part) and 5GiB (S3's largest single upload)",
            );
        }
        let after = match (raw.after.unwrap_or(RawAfter::Delete), &raw.archive) {
            (RawAfter::Archive, Some(dir)) => {
                After::Archive(self.archive(&field("archive"), route, dir))
            }
            (RawAfter::Archive, None) => {
                self.problem(
                    &field("after"),
                    "archive needs `archive:`, a directory to move files into",
                );
                After::Keep
            }
            (_, Some(_)) => {
                self.problem(&field("archive"), "is only used with `after: archive`");
                After::Keep
            }
            (RawAfter::Delete, None) => After::Delete,
            (RawAfter::Keep, None) => After::Keep,
        };
        Offload {
            min_age: raw.min_age.unwrap_or(defaults.min_age),
            after,
            concurrency,
            multipart_threshold,
        }
    }

    /// The archive directory: it must exist on the route root's file system, because files are
    /// renamed into it (never copied, never across file systems).
    fn archive(&mut self, at: &[Step], route: &RawRoute, dir: &str) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let path = self.base.join(dir);
        let root = self.base.join(&route.root);
        match (std::fs::metadata(&path), std::fs::metadata(&root)) {
            (Ok(archive), _) if !archive.is_dir() => {
                self.problem(at, format!("{} is not a directory", path.display()));
            }
            (Ok(archive), Ok(root_meta)) if archive.dev() != root_meta.dev() => {
                self.problem(
                    at,
                    format!(
                        "{} is on another file system than the root {}: files are renamed into the archive, never copied",
                        path.display(),
                        root.display()
                    ),
                );
            }
            (Err(e), _) => {
                self.problem(at, format!("cannot use {}: {e}", path.display()));
            }
            _ => {}
        }
        let beneath = match (path.canonicalize(), root.canonicalize()) {
            (Ok(archive), Ok(root)) => archive.starts_with(root),
            _ => false,
        };
        if beneath {
            self.problem(
                at,
                format!(
                    "{} is beneath the root {}: the server would serve what was archived, and offload would move it again",
                    path.display(),
                    root.display()
                ),
            );
        }
        path
    }

    /// Index file names must be plain names in the directory itself.
    fn index(&mut self, at: &[Step], index: &[String]) {
        for (i, name) in index.iter().enumerate() {
            if name.is_empty() || name.contains('/') || name.starts_with('.') {
                self.problem(
                    &[at, &[Step::Index(i)]].concat(),
                    format!("{name:?} must be a plain file name like index.html"),
                );
            }
        }
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

/// How long a browser may keep a preflight's answer when `cors:` does not say.
const DEFAULT_CORS_MAX_AGE: Duration = Duration::from_secs(600);

/// Whether `origin` is written as browsers send `Origin` (`https://app.example.com:8443`):
/// compared byte for byte, anything else would never match.
fn serialized_origin(origin: &str) -> Result<(), &'static str> {
    let host = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
        .ok_or("is not an origin: it starts with https:// or http://")?;
    if host.is_empty() || host.contains(['/', '?', '#', '@', ' ']) {
        return Err("is not an origin: scheme and host (and port) only, no path or trailing slash");
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("has capitals: browsers send the host in lowercase");
    }
    if host.contains('*') {
        return Err("has a wildcard: list each origin, or use \"*\" alone for any");
    }
    let default_port = if origin.starts_with("https://") {
        ":443"
    } else {
        ":80"
    };
    if host.ends_with(default_port) {
        return Err("names the default port: browsers leave it out of Origin");
    }
    Ok(())
}
