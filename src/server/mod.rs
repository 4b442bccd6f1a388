//! The server: client connections (`front`) answered locally (`respond`, over `http1`) or
//! through Pingora's proxy (`proxy`), the credential refresher, and starting it all from a
//! compiled config: no second config file, no surprises at bind time.

pub mod front;
pub mod http1;
pub mod proxy;
pub mod refresher;
pub mod respond;

use std::net::TcpListener;
use std::sync::Arc;

use pingora::proxy::http_proxy;
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::background::background_service;
use pingora::services::listening::Service;

use crate::config::Config;
use front::Front;
use proxy::Spillway;
use refresher::Refresher;

/// Why the server could not start; the cause is part of the message, said once.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {address}: {error}")]
    Bind {
        address: std::net::SocketAddr,
        error: std::io::Error,
    },
}

/// Builds Pingora's `ServerConf` from `proxy.yaml`'s values; it is plain data.
fn server_conf(config: &Config) -> ServerConf {
    ServerConf {
        threads: config.threads,
        grace_period_seconds: Some(round_up_secs(config.shutdown.grace_period)),
        graceful_shutdown_timeout_seconds: Some(round_up_secs(config.shutdown.timeout)),
        ..ServerConf::default()
    }
}

fn round_up_secs(d: std::time::Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Checks every listen address can be bound, so a port in use is a clear error before Pingora
/// starts (Pingora itself would only log it from a worker thread).
pub fn check_listeners(config: &Config) -> Result<(), StartError> {
    for &address in &config.listen {
        TcpListener::bind(address).map_err(|error| StartError::Bind { address, error })?;
    }
    Ok(())
}

/// Runs the server until SIGTERM (graceful) or SIGINT (fast). Does not return.
pub fn run(config: Config) -> Result<(), StartError> {
    check_listeners(&config)?;
    let conf = server_conf(&config);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let config = Arc::new(config);
    let proxy = http_proxy(&server.configuration, Spillway::new(&config));
    let front = Front::new(Arc::clone(&config), proxy);
    let mut service = Service::new("spillway".to_string(), front);
    for address in &config.listen {
        service.add_tcp(&address.to_string());
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
    for address in &config.listen {
        tracing::info!(%address, threads = config.threads, routes = config.routes.len(), "spillway listening");
    }
    server.run_forever()
}
