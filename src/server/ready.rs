//! Knowing when the server serves: a socket listens on every listener's port (the admin one
//! too) and the signal handlers are in place, so a reload asked for as soon as the server
//! says it is ready is not dropped. Then this process records itself in the pid file and
//! tells systemd, which after a reload is how the new process takes over. (Read from
//! `/proc/self/net/tcp*` rather than by connecting: a probe connection would be a client to
//! serve, and a TLS listener would log its failed handshake.)

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

use crate::server::runtime_dir::RuntimeDir;
use crate::telemetry::systemd;

pub struct Ready {
    pub addresses: Vec<SocketAddr>,
    pub runtime: RuntimeDir,
    /// Set by the signal watcher once its handlers are installed.
    pub signals_handled: Arc<AtomicBool>,
    /// Set once every listener (the admin one too) accepts and the signal handlers are in place.
    pub flag: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for Ready {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut poll = tokio::time::interval(Duration::from_millis(10));
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = shutdown.changed() => return,
            }
            if !self.signals_handled.load(Ordering::Acquire) {
                continue;
            }
            let listening = listening_ports();
            if self
                .addresses
                .iter()
                .all(|address| listening.contains(&address.port()))
            {
                break;
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

/// The TCP ports with a listening socket in this network namespace.
fn listening_ports() -> Vec<u16> {
    const LISTEN: &str = "0A";
    let mut ports = Vec::new();
    for table in ["/proc/self/net/tcp", "/proc/self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut fields = line.split_whitespace();
            let (Some(local), Some(state)) = (fields.nth(1), fields.nth(1)) else {
                continue;
            };
            let port = local
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            if let (Some(port), LISTEN) = (port, state) {
                ports.push(port);
            }
        }
    }
    ports
}
