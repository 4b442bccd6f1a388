//! `offload --watch`'s admin listener: `/metrics`, `/healthz` (the process runs) and `/readyz`
//! (every chosen route is watched), like the proxy's. One short request per connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::offload::metrics::OffloadMetrics;

/// A scraper that has not sent its request head by then is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A request head larger than this is refused.
const MAX_HEAD: usize = 8 << 10;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} for /metrics, /healthz and /readyz: {error} (another process, such as the proxy with the same `admin:`, may have it: give offload its own with --admin)")]
pub struct BindError {
    address: SocketAddr,
    error: std::io::Error,
}

/// Binds `address` and answers on it until the runtime ends.
pub async fn serve(
    address: SocketAddr,
    metrics: Arc<OffloadMetrics>,
    ready: Arc<AtomicBool>,
) -> Result<SocketAddr, BindError> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|error| BindError { address, error })?;
    let bound = listener
        .local_addr()
        .map_err(|error| BindError { address, error })?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                // Out of descriptors, say: the next accept may do better.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            let metrics = Arc::clone(&metrics);
            let ready = Arc::clone(&ready);
            tokio::spawn(async move {
                let _ = tokio::time::timeout(HEAD_TIMEOUT, answer(stream, &metrics, &ready)).await;
            });
        }
    });
    Ok(bound)
}

// Long on purpose: a request head read and its three pages answered, as a table of paths.
async fn answer(
    mut stream: TcpStream,
    metrics: &OffloadMetrics,
    ready: &AtomicBool,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    let request = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&head) {
            Ok(httparse::Status::Complete(_)) => {
                break (
                    parsed.method.unwrap_or("").to_owned(),
                    parsed.path.unwrap_or("").to_owned(),
                )
            }
            Ok(httparse::Status::Partial) if head.len() < MAX_HEAD => continue,
            _ => break (String::new(), String::new()),
        }
    };
    const TEXT: &str = "text/plain; charset=utf-8";
    let (status, content_type, body) = match (request.0.as_str(), request.1.as_str()) {
        ("", _) => ("400 Bad Request", TEXT, "bad request\n".to_owned()),
        ("GET" | "HEAD", "/metrics") => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics.render(),
        ),
        ("GET" | "HEAD", "/healthz") => ("200 OK", TEXT, "ok\n".to_owned()),
        ("GET" | "HEAD", "/readyz") if ready.load(Ordering::Acquire) => {
            ("200 OK", TEXT, "ready\n".to_owned())
        }
        ("GET" | "HEAD", "/readyz") => (
            "503 Service Unavailable",
            TEXT,
            "not ready: the routes are not all watched yet\n".to_owned(),
        ),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            TEXT,
            "not found: /metrics, /healthz and /readyz are here\n".to_owned(),
        ),
        _ => ("405 Method Not Allowed", TEXT, "GET only\n".to_owned()),
    };
    let mut response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\ncache-control: no-store\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if request.0 != "HEAD" {
        response.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&response).await?;
    stream.shutdown().await
}
