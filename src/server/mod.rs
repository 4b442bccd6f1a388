//! The process: starting the front (`crate::front`) and the upstream clients
//! (`crate::upstream`) from a compiled config on Pingora's listeners, the background services
//! (credential refresher, ACME certificates, readiness, drain), the admin listener, signals and reloads, and the
//! private runtime directory. No second config file, no surprises at bind time.

pub mod acme;
pub mod admin;
pub mod ready;
pub mod refresher;
pub mod runtime_dir;
pub mod signals;
pub mod tls_alpn;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::listeners::ListenerConfig;
use pingora::protocols::l4::stream::L4BufferSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::acme::ChallengeKind;
use crate::config::tls::Certificates;
use crate::config::Config;
use crate::front::connection::Front;
use crate::front::connections::{Connections, ExitWhenDrained};
use crate::telemetry::access_log::AccessLog;
use crate::telemetry::metrics::Metrics;
use crate::telemetry::Telemetry;
use crate::upstream::proxy::Spillway;
use admin::Admin;
use ready::Ready;
use refresher::Refresher;
use runtime_dir::{RuntimeDir, RuntimeDirError};
use signals::Signals;

/// Why the server could not start; the cause is part of the message, said once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}{purpose}: {error}")]
    Bind {
        address: std::net::SocketAddr,
        purpose: &'static str,
        error: std::io::Error,
    },
    #[error("cannot listen on {address}{purpose}: port 0 would be a different port at every start and reload; give a port")]
    PortZero {
        address: std::net::SocketAddr,
        purpose: &'static str,
    },
    #[error(transparent)]
    RuntimeDir(#[from] RuntimeDirError),
    #[error("cannot set up TLS on {address}: {error}")]
    Tls {
        address: std::net::SocketAddr,
        error: String,
    },
    #[error("cannot open the access log: {0}")]
    AccessLog(std::io::Error),
    #[error("{0}")]
    Acme(String),
}

/// Builds Pingora's `ServerConf` from `proxy.yaml`'s values; it is plain data.
fn server_conf(config: &Config, runtime: &RuntimeDir) -> ServerConf {
    ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(round_up_secs(config.shutdown.grace_period)),
        graceful_shutdown_timeout_seconds: Some(round_up_secs(config.shutdown.timeout)),
        upgrade_sock: runtime.upgrade_socket().display().to_string(),
        pid_file: runtime.pid_file().display().to_string(),
        ..ServerConf::default()
    }
}

fn round_up_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Checks every listen address, the admin one too, can be bound, so a port in use is a clear
/// error before Pingora starts (Pingora itself would only log it from a worker thread, and
/// the server would never be ready).
/// With `upgrade` the old process holds the ports, so only what the addresses say is checked.
pub fn check_listeners(config: &Config, upgrade: bool) -> Result<(), StartError> {
    let public = config.listen.iter().map(|l| (l.address, ""));
    let admin = config
        .admin
        .map(|a| (a, " for /metrics, /healthz and /readyz (`admin:`)"));
    for (address, purpose) in public.chain(admin) {
        if address.port() == 0 {
            return Err(StartError::PortZero { address, purpose });
        }
        if !upgrade {
            TcpListener::bind(address).map_err(|error| StartError::Bind {
                address,
                purpose,
                error,
            })?;
        }
    }
    Ok(())
}

/// Raises the open-file soft limit to the hard limit: each connection holds a descriptor, and
/// the common soft limit of 1,024 would stop all service at about a thousand idle clients.
fn raise_open_file_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    let shown = |n: Option<u64>| n.map_or("unlimited".to_owned(), |n| n.to_string());
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) if limit.current == limit.maximum => {
            tracing::info!("open files limit {}", shown(limit.maximum))
        }
        Ok(()) => tracing::info!(
            "open files limit {} (raised from {})",
            shown(limit.maximum),
            shown(limit.current)
        ),
        Err(e) => tracing::warn!(
            "open files limit {}: cannot raise it to {}: {e}",
            shown(limit.current),
            shown(limit.maximum)
        ),
    }
}

// Long on purpose: the startup sequence in the order it must happen (listeners, services, readiness, upgrade), read top to bottom.
/// Runs the server until it is stopped or replaced by a reload. With `upgrade`, it takes the
/// listening sockets over from the running process instead of binding them.
pub fn run(config: Config, upgrade: bool) -> Result<(), StartError> {
    signals::hold_until_handled();
    let runtime = RuntimeDir::prepare(&config.runtime_dir())?;
    // During an upgrade the old process holds the ports: they are handed over.
    check_listeners(&config, upgrade)?;
    raise_open_file_limit();
    // One crypto provider for every rustls config of the process (the ACME client's too).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let acme_listeners = acme_listeners(&config);
    acme::prepare_state_dirs(&acme_listeners).map_err(StartError::Acme)?;
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf(&config, &runtime));
    server.bootstrap();
    let config = Arc::new(config);
    let telemetry = Arc::new(telemetry(&config)?);
    let connections = Connections::new(config.limits.max_connections);
    let proxy = http_proxy(
        &server.configuration,
        Spillway::new(&config, Arc::clone(&telemetry)),
    );
    let front = Front::new(
        Arc::clone(&config),
        proxy,
        Arc::clone(&connections),
        Arc::clone(&telemetry),
    );
    let mut service = Service::new("spillway".to_string(), front);
    if acme_listeners.iter().any(|c| {
        c.acme
            .as_ref()
            .is_some_and(|a| a.challenge == ChallengeKind::TlsAlpn01)
    }) {
        let answer = tls_alpn::TlsAlpn01 {
            challenges: Arc::clone(&config.challenges),
        };
        service.endpoints().set_pre_tls_callback(Arc::new(answer));
    }
    for listener in &config.listen {
        let mut endpoint = ListenerConfig::tcp(listener.address.to_string()).l4_buffer(l4_buffer());
        if let Some(certificates) = &listener.tls {
            let mut settings = TlsSettings::intermediate("", "").map_err(|e| StartError::Tls {
                address: listener.address,
                error: e.to_string(),
            })?;
            settings.set_cert_resolver(Arc::clone(certificates) as _);
            settings.enable_h2();
            endpoint = endpoint.tls(settings);
        }
        service.add_listener(endpoint);
        // An `acme:` listener's expiry is shown by its keeper, under its first domain.
        let static_certificates = listener.tls.iter().filter(|c| c.acme.is_none());
        for cert in static_certificates.flat_map(|c| c.describe()) {
            telemetry
                .metrics
                .certificate_expires(&cert.names[0], cert.not_after);
        }
        tracing::info!(
            address = %listener.address,
            tls = listener.tls.is_some(),
            threads = config.threads,
            routes = config.site.routes.len(),
            "spillway listening"
        );
    }
    server.add_service(service);
    if !acme_listeners.is_empty() {
        let keeper = acme::AcmeCertificates {
            listeners: acme_listeners,
            telemetry: Arc::clone(&telemetry),
        };
        server.add_service(background_service("acme certificates", keeper));
    }
    if let Some(chain) = &config.chain_credentials {
        let refresher = Refresher {
            cell: Arc::clone(&chain.cell),
            region: chain.region.clone(),
            longest_ttl: chain.longest_ttl,
        };
        server.add_service(background_service("credential refresher", refresher));
    }
    let ready_flag = Arc::new(AtomicBool::new(false));
    if let Some(address) = config.admin {
        let admin = Admin {
            config: Arc::clone(&config),
            telemetry: Arc::clone(&telemetry),
            connections: Arc::clone(&connections),
            ready: Arc::clone(&ready_flag),
        };
        let mut service = Service::new("admin".to_string(), admin);
        service.add_tcp(&address.to_string());
        server.add_service(service);
        tracing::info!(%address, "admin listening: /metrics, /healthz, /readyz");
    }
    let signals_handled = Arc::new(AtomicBool::new(false));
    let ready = Ready {
        addresses: config
            .listen
            .iter()
            .map(|l| l.address)
            .chain(config.admin)
            .collect(),
        runtime: runtime.clone(),
        signals_handled: Arc::clone(&signals_handled),
        flag: ready_flag,
    };
    server.add_service(background_service("readiness", ready));
    let exiting = runtime.clone();
    let drain = ExitWhenDrained {
        connections,
        on_exit: Box::new(move || exiting.clean_up()),
    };
    server.add_service(background_service("drain", drain));
    let signals = Signals {
        command: signals::own_command(&config.source),
        listeners: config
            .listen
            .iter()
            .map(|l| l.address)
            .chain(config.admin)
            .collect(),
        runtime: runtime.clone(),
        telemetry: Arc::clone(&telemetry),
        handled: signals_handled,
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    runtime.clean_up();
    Ok(())
}

/// The certificates of `acme:` listeners, once each (one address may resolve to several
/// listeners sharing them).
fn acme_listeners(config: &Config) -> Vec<Arc<Certificates>> {
    let mut all: Vec<Arc<Certificates>> = Vec::new();
    for certificates in config.listen.iter().filter_map(|l| l.tls.as_ref()) {
        if certificates.acme.is_some() && !all.iter().any(|c| Arc::ptr_eq(c, certificates)) {
            all.push(Arc::clone(certificates));
        }
    }
    all
}

/// Metrics, and the access log's writer, started.
fn telemetry(config: &Config) -> Result<Telemetry, StartError> {
    let metrics = Metrics::new();
    // A reloaded process carries on its predecessors' reload counts.
    if let Some((ok, failed)) = std::env::var(signals::RELOADS_ENV).ok().and_then(|v| {
        let (ok, failed) = v.split_once(',')?;
        Some((ok.parse().ok()?, failed.parse().ok()?))
    }) {
        metrics.count_reloads(ok, failed);
    }
    let log = AccessLog::start(
        config.access_log.format,
        &config.access_log.sink,
        metrics.log_dropped.clone(),
    )
    .map_err(StartError::AccessLog)?;
    Ok(Telemetry {
        metrics,
        count_requests: config.admin.is_some(),
        log,
    })
}

/// No read buffer in front of a client socket: the front reads request heads into its own
/// buffer, sized to the head, and Pingora's default would be 64 KiB, allocated and zeroed for
/// every connection, idle or not. No write buffer either: it too is allocated per connection
/// at accept (1.4 KiB by default), and the front assembles each local response in one buffer
/// of its own.
fn l4_buffer() -> L4BufferSettings {
    L4BufferSettings::new(0, 0)
}
