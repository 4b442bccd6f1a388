//! Signals, and reloading without dropping a request.
//!
//! - SIGHUP reloads: a new process is started with the same command line plus `--upgrade`. It
//!   loads and checks the config; if that fails it exits, its error is in the log, and this
//!   process keeps serving. If it succeeds it waits on the runtime dir's upgrade socket, and
//!   this process hands it the listening sockets (Pingora's upgrade protocol), stops
//!   accepting at once, finishes what is in flight, and exits.
//! - SIGTERM stops gracefully (see `Shutdown`), SIGINT at once; SIGUSR1 reopens the access log.
//! - SIGQUIT, which Pingora would take as "hand the sockets to whoever waits on the upgrade
//!   socket", only says how to reload or stop: the sockets are never handed over unasked.

use std::os::fd::{BorrowedFd, RawFd};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use pingora::server::{Fds, ShutdownSignal, ShutdownSignalWatch};
use tokio::signal::unix::{signal, SignalKind};

use crate::server::runtime_dir::RuntimeDir;
use crate::telemetry::Telemetry;

/// How a reloaded process learns the reload counts so far (`ok,failed`), so
/// `spillway_config_reloads_total` carries on across processes.
pub const RELOADS_ENV: &str = "SPILLWAY_RELOADS";

/// How long a new process may take to load its config and wait for the sockets.
const NEW_PROCESS_TIMEOUT: Duration = Duration::from_secs(30);

/// Until the server's own handlers are in place, SIGHUP, SIGQUIT and SIGUSR1 must not end the
/// process (their default action): a reload or log reopen asked for during startup is
/// dropped, not fatal.
pub fn hold_until_handled() {
    for signal in [libc::SIGHUP, libc::SIGQUIT, libc::SIGUSR1] {
        // SAFETY: `signal(2)` with SIG_IGN installs no handler code; it only sets the
        // disposition, and does so before any other thread reacts to these signals.
        unsafe {
            libc::signal(signal, libc::SIG_IGN);
        }
    }
}

pub struct Signals {
    /// The program and arguments to start a reloaded process with (`--upgrade` is added).
    pub command: Vec<String>,
    /// Every listening address (public and admin), as the listeners were added: the keys the
    /// new process finds its sockets under.
    pub listeners: Vec<std::net::SocketAddr>,
    pub runtime: RuntimeDir,
    pub telemetry: Arc<Telemetry>,
    /// Set once the handlers are installed (readiness waits for it).
    pub handled: Arc<AtomicBool>,
}

#[async_trait]
impl ShutdownSignalWatch for Signals {
    async fn recv(&self) -> ShutdownSignal {
        let (Ok(mut hup), Ok(mut term), Ok(mut int), Ok(mut quit), Ok(mut usr1)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::quit()),
            signal(SignalKind::user_defined1()),
        ) else {
            tracing::error!("cannot install signal handlers; stopping");
            return ShutdownSignal::FastShutdown;
        };
        self.handled.store(true, Ordering::Release);
        loop {
            tokio::select! {
                _ = term.recv() => {
                    tracing::info!("SIGTERM: stopping gracefully");
                    return ShutdownSignal::GracefulTerminate;
                }
                _ = int.recv() => {
                    tracing::info!("SIGINT: stopping now");
                    return ShutdownSignal::FastShutdown;
                }
                _ = usr1.recv() => {
                    // The writer reopens at its next batch, after logrotate moved the file.
                    self.telemetry.log.reopen();
                    tracing::info!("SIGUSR1: reopening the access log");
                }
                _ = quit.recv() => {
                    tracing::warn!("SIGQUIT ignored: SIGHUP (or `spillway reload`) reloads, SIGTERM stops");
                }
                _ = hup.recv() => match self.start_new_process().await {
                    Ok(pid) => match self.hand_over() {
                        // The new process accepts from the same sockets; connections that
                        // arrive until it does wait in their backlog, so this one stops
                        // accepting now, not after Pingora's fixed 5 s of both accepting: a
                        // connection made after `reload` returns gets the new config.
                        Ok(()) => {
                            tracing::info!(pid, "reload: the new process has the config and the listeners");
                            return ShutdownSignal::GracefulTerminate;
                        }
                        Err(e) => {
                            self.telemetry.metrics.reload(false);
                            tracing::error!("reload failed, still serving with the running config: cannot hand the listeners to pid {pid}: {e}");
                        }
                    },
                    Err(e) => {
                        self.telemetry.metrics.reload(false);
                        tracing::error!("reload failed, still serving with the running config: {e}");
                    }
                },
            }
        }
    }
}

impl Signals {
    /// Sends this process's listening sockets to the new one waiting on the upgrade socket,
    /// as Pingora's upgrade does (the same keys, the same message), found among this process's
    /// descriptors by the addresses they listen on.
    fn hand_over(&self) -> Result<(), String> {
        let mut fds = Fds::new();
        let mut missing: Vec<String> = Vec::new();
        let listening = listening_sockets();
        for address in &self.listeners {
            match listening.iter().find(|(_, bound)| bound == address) {
                Some((fd, _)) => fds.add(address.to_string(), *fd),
                None => missing.push(address.to_string()),
            }
        }
        if !missing.is_empty() {
            return Err(format!(
                "no listening socket found for {}",
                missing.join(", ")
            ));
        }
        let socket = self.runtime.upgrade_socket();
        let path = socket.to_string_lossy().into_owned();
        fds.send_to_sock(path.as_str())
            .map_err(|e| format!("sending them to {path}: {e}"))?;
        self.runtime.hand_over();
        Ok(())
    }

    /// Starts the process that takes over, and waits until it is ready for the sockets.
    async fn start_new_process(&self) -> Result<u32, String> {
        let socket = self.runtime.upgrade_socket();
        // A socket left by an earlier upgrade would look like readiness.
        let _ = std::fs::remove_file(&socket);
        let (program, args) = self
            .command
            .split_first()
            .ok_or("no command line to start a new process with")?;
        tracing::info!("SIGHUP: starting a new process with the config as it is now");
        let (ok, failed) = self.telemetry.metrics.reload_counts();
        let mut child = Command::new(program)
            .args(args)
            .arg("--upgrade")
            .env(RELOADS_ENV, format!("{},{failed}", ok + 1))
            .spawn()
            .map_err(|e| format!("cannot start {program}: {e}"))?;
        let pid = child.id();
        let deadline = Instant::now() + NEW_PROCESS_TIMEOUT;
        loop {
            if let Some(status) = exited(&mut child) {
                return Err(format!(
                    "the new process (pid {pid}) exited with {status}: its reason is logged above"
                ));
            }
            if socket.exists() {
                return Ok(pid);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "the new process (pid {pid}) was not ready within {}s; it was stopped",
                    NEW_PROCESS_TIMEOUT.as_secs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// This process's listening sockets and the addresses they are bound to.
fn listening_sockets() -> Vec<(RawFd, std::net::SocketAddr)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| {
            // SAFETY: the descriptor is open for this call (it is listed in /proc/self/fd, and
            // a listener is never closed while the server runs); it is only borrowed.
            let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
            if !rustix::net::sockopt::socket_acceptconn(borrowed).ok()? {
                return None;
            }
            let address = rustix::net::getsockname(borrowed).ok()?;
            Some((fd, std::net::SocketAddr::try_from(address).ok()?))
        })
        .collect()
}

fn exited(child: &mut Child) -> Option<std::process::ExitStatus> {
    child.try_wait().ok().flatten()
}

/// The command line this process was started with, with `--upgrade` taken out, for starting
/// its successor; the config path made absolute, so a relative path still means the same file.
pub fn own_command(config: &std::path::Path) -> Vec<String> {
    let exe = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "spillway".to_owned());
    let config = config
        .canonicalize()
        .unwrap_or_else(|_| PathBuf::from(config));
    vec![
        exe,
        "run".to_owned(),
        "--config".to_owned(),
        config.display().to_string(),
    ]
}
