//! Open client connections: counted, so that `max_connections` holds, and so that a stopping
//! process exits as soon as its last connection ends instead of sleeping out its grace period.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;

#[derive(Debug)]
pub struct Connections {
    open: AtomicUsize,
    /// HTTP/1 connections waiting for their next request.
    idle: AtomicUsize,
    max: Option<usize>,
}

/// An HTTP/1 connection waiting for a request; dropping it ends the wait.
pub struct Idle<'a>(&'a Connections);

impl Drop for Idle<'_> {
    fn drop(&mut self) {
        self.0.idle.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One admitted connection; dropping it lets another in.
pub struct Admitted(Arc<Connections>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connections {
    pub fn new(max: Option<usize>) -> Arc<Connections> {
        Arc::new(Connections {
            open: AtomicUsize::new(0),
            idle: AtomicUsize::new(0),
            max,
        })
    }

    /// Counts a new connection in, unless `max_connections` are open already.
    pub fn admit(self: &Arc<Self>) -> Option<Admitted> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        let admitted = Admitted(Arc::clone(self));
        match self.max {
            Some(max) if before >= max => None,
            _ => Some(admitted),
        }
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Marks a connection idle until the guard is dropped.
    pub fn waiting(&self) -> Idle<'_> {
        self.idle.fetch_add(1, Ordering::Relaxed);
        Idle(self)
    }

    pub fn idle(&self) -> usize {
        self.idle.load(Ordering::Relaxed)
    }
}

/// A background service that, once a graceful stop or upgrade has begun, ends the process as
/// soon as no connection is open. Pingora itself would sleep the whole grace period even with
/// nothing left to finish, which makes every deploy as slow as the longest download allowed.
pub struct ExitWhenDrained {
    pub connections: Arc<Connections>,
    /// Called just before exiting (the runtime dir is cleaned up there).
    pub on_exit: Box<dyn Fn() + Send + Sync>,
}

#[async_trait]
impl BackgroundService for ExitWhenDrained {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        while !*shutdown.borrow_and_update() {
            if shutdown.changed().await.is_err() {
                return;
            }
        }
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        loop {
            poll.tick().await;
            if self.connections.open() == 0 {
                tracing::info!("every connection has ended: exiting");
                (self.on_exit)();
                std::process::exit(0);
            }
        }
    }
}
