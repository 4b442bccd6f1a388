//! In-process servers: the plumbing they share.

use super::*;

/// A hyper HTTP/1 server on its own thread with its own current-thread tokio
/// runtime, so both plain `#[test]`s and `#[tokio::test]`s can use it. The
/// listener is bound before this returns, so the port is usable at once.
/// Dropping it stops the accept loop and, with the runtime, every connection.
pub struct BackgroundServer {
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl BackgroundServer {
    pub fn start<S, B>(name: &str, listener: TcpListener, service: S) -> Self
    where
        S: hyper::service::Service<
                http::Request<hyper::body::Incoming>,
                Response = http::Response<B>,
            > + Clone
            + Send
            + 'static,
        S::Future: 'static,
        S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
        B: hyper::body::Body + 'static,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let port = listener.local_addr().expect("local_addr").port();
        listener.set_nonblocking(true).expect("set_nonblocking");
        let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{name}-{port}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                // A LocalSet lets connection tasks be !Send (no Send bounds
                // on the generic service and body types).
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        let stream = tokio::select! {
                            _ = &mut rx => return,
                            accepted = listener.accept() => match accepted {
                                Ok((stream, _)) => stream,
                                Err(_) => continue, // e.g. EMFILE under load; keep serving
                            },
                        };
                        let service = service.clone();
                        tokio::task::spawn_local(async move {
                            let io = hyper_util::rt::TokioIo::new(stream);
                            let _ = hyper::server::conn::http1::Builder::new()
                                .keep_alive(true)
                                .serve_connection(io, service)
                                .await;
                        });
                    }
                });
            })
            .expect("spawn server thread");
        Self {
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for BackgroundServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(crate) fn bind_any() -> TcpListener {
    TcpListener::bind((LOCALHOST, 0)).expect("bind 127.0.0.1:0")
}
