//! Knowing when the server serves: every listener accepts. Then this process records itself in
//! the pid file and tells systemd, which after a reload is how the new process takes over.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::server::runtime_dir::RuntimeDir;
use crate::server::systemd;

pub struct Ready {
    pub addresses: Vec<SocketAddr>,
    pub runtime: RuntimeDir,
    /// Set once every listener accepts.
    pub flag: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        for &address in &self.addresses {
            let probe = probe_address(address);
            loop {
                let accepted = tokio::select! {
                    connected = tokio::net::TcpStream::connect(probe) => connected.is_ok(),
                    _ = shutdown.changed() => return,
                };
                if accepted {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        self.flag.store(true, Ordering::Release);
        if let Err(e) = self.runtime.write_pid() {
            tracing::warn!(
                "cannot write {}: {e}; `spillway reload` will not find this process",
                self.runtime.pid_file().display()
            );
        }
        systemd::notify(&format!("READY=1\nMAINPID={}", std::process::id()));
        tracing::info!(
            pid = std::process::id(),
            runtime_dir = %self.runtime.path().display(),
            "ready"
        );
    }
}

/// A wildcard address is probed on loopback.
fn probe_address(address: SocketAddr) -> SocketAddr {
    let mut probe = address;
    if probe.ip().is_unspecified() {
        probe.set_ip(match address {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    probe
}
