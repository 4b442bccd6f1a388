//! The server: client connections (`front`, `h2`) answered locally (`local`, `respond`, over
//! `http1`) or through Pingora's proxy (`proxy`); the background services (credential
//! refresher, readiness, drain); signals and reloads; and starting it all from a compiled
//! config: no second config file, no surprises at bind time.

pub mod connections;
pub mod front;
pub mod h2;
pub mod http1;
pub mod local;
pub mod proxy;
pub mod ready;
pub mod refresher;
pub mod respond;
pub mod runtime_dir;
pub mod signals;
pub mod systemd;

use std::net::TcpListener;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use pingora::listeners::tls::TlsSettings;
use pingora::proxy::http_proxy;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::Config;
use connections::{Connections, ExitWhenDrained};
use front::Front;
use proxy::Spillway;
use ready::Ready;
use refresher::Refresher;
use runtime_dir::{RuntimeDir, RuntimeDirError};
use signals::Signals;

/// Why the server could not start; the cause is part of the message, said once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {error}")]
    Bind {
        address: std::net::SocketAddr,
        error: std::io::Error,
    },
    #[error(transparent)]
    RuntimeDir(#[from] RuntimeDirError),
    #[error("cannot set up TLS on {address}: {error}")]
    Tls {
        address: std::net::SocketAddr,
        error: String,
    },
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

/// Checks every listen address can be bound, so a port in use is a clear error before Pingora
/// starts (Pingora itself would only log it from a worker thread).
pub fn check_listeners(config: &Config) -> Result<(), StartError> {
    for listener in &config.listen {
        let address = listener.address;
        TcpListener::bind(address).map_err(|error| StartError::Bind { address, error })?;
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

/// Runs the server until it is stopped or replaced by a reload. With `upgrade`, it takes the
/// listening sockets over from the running process instead of binding them.
pub fn run(config: Config, upgrade: bool) -> Result<(), StartError> {
    signals::hold_until_handled();
    let runtime = RuntimeDir::prepare(&config.runtime_dir())?;
    if !upgrade {
        // During an upgrade the old process holds the ports: they are handed over.
        check_listeners(&config)?;
    }
    raise_open_file_limit();
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), server_conf(&config, &runtime));
    server.bootstrap();
    let config = Arc::new(config);
    let connections = Connections::new(config.limits.max_connections);
    let proxy = http_proxy(&server.configuration, Spillway::new(&config));
    let front = Front::new(Arc::clone(&config), proxy, Arc::clone(&connections));
    let mut service = Service::new("spillway".to_string(), front);
    for listener in &config.listen {
        let address = listener.address.to_string();
        match &listener.tls {
            None => service.add_tcp(&address),
            Some(certificates) => {
                let mut settings =
                    TlsSettings::intermediate("", "").map_err(|e| StartError::Tls {
                        address: listener.address,
                        error: e.to_string(),
                    })?;
                settings.set_cert_resolver(Arc::clone(certificates) as _);
                settings.enable_h2();
                service.add_tls_with_settings(&address, None, settings);
            }
        }
        tracing::info!(
            address = %listener.address,
            tls = listener.tls.is_some(),
            threads = config.threads,
            routes = config.routes.len(),
            "spillway listening"
        );
    }
    server.add_service(service);
    if let Some(chain) = &config.chain_credentials {
        let refresher = Refresher {
            cell: Arc::clone(&chain.cell),
            region: chain.region.clone(),
            longest_ttl: chain.longest_ttl,
        };
        server.add_service(background_service("credential refresher", refresher));
    }
    let ready = Ready {
        addresses: config.listen.iter().map(|l| l.address).collect(),
        runtime: runtime.clone(),
        flag: Arc::new(AtomicBool::new(false)),
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
        runtime: runtime.clone(),
    };
    server.run(RunArgs {
        shutdown_signal: Box::new(signals),
    });
    runtime.clean_up();
    Ok(())
}
