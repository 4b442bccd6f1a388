//! systemd's readiness protocol (`Type=notify`): "READY=1" once the listeners accept and the
//! signal handlers are in place (or, for
//! `offload --watch`, once every route is watched), after a reload "MAINPID=<new>" so systemd
//! follows the process that now serves, and "WATCHDOG=1" while the event loop runs
//! (`WatchdogSec=`). A few bytes on a datagram socket; without `NOTIFY_SOCKET` it does nothing.

use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Sends `state` to the service manager, if there is one.
pub fn notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let path = path.to_string_lossy();
    let address = match path.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => SocketAddr::from_pathname(path.as_ref()),
    };
    let sent = address.and_then(|address| {
        let socket = UnixDatagram::unbound()?;
        socket.send_to_addr(state.as_bytes(), &address)
    });
    if let Err(e) = sent {
        tracing::warn!("cannot tell systemd {state:?}: {e}");
    }
}

/// Stops feeding the watchdog when dropped.
pub struct Watchdog(Option<tokio::task::JoinHandle<()>>);

impl Drop for Watchdog {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// With `WatchdogSec=` set for this process, sends "WATCHDOG=1" at half the interval from a
/// task on the current runtime: if the runtime stalls, systemd notices and restarts the service.
pub fn keep_watchdog_fed() -> Watchdog {
    let interval = std::env::var("WATCHDOG_USEC")
        .ok()
        .and_then(|usec| usec.parse::<u64>().ok())
        .filter(|usec| *usec > 0);
    let ours = std::env::var("WATCHDOG_PID")
        .ok()
        .and_then(|pid| pid.parse::<u32>().ok())
        .is_none_or(|pid| pid == std::process::id());
    let Some(usec) = interval.filter(|_| ours) else {
        return Watchdog(None);
    };
    let every = std::time::Duration::from_micros(usec / 2);
    Watchdog(Some(tokio::spawn(async move {
        let mut ticks = tokio::time::interval(every);
        loop {
            ticks.tick().await;
            notify("WATCHDOG=1");
        }
    })))
}
