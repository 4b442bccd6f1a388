//! Connections to the upstreams for the short way: new ones with the upstream's connect
//! timeout, and idle keep-alive ones kept per worker thread, taken and given back with no lock
//! and no system call.
//!
//! Pingora's pool checks every reused connection with `getpeername` and watches each idle one
//! from a task of its own; here an idle connection is looked at once, when it is taken: one
//! the reactor saw data or a close on is dropped (`quiet`). One the upstream closes as the
//! request goes out is found when the request gets no answer, and the request goes again on
//! the next (`forward.rs`: GET and HEAD only, and only when nothing of an answer came). Idle connections past their
//! `idle_timeout` are dropped when the pool is next used; a thread whose traffic stops keeps at
//! most `MOST_IDLE` of them until then.

use std::cell::RefCell;
use std::net::SocketAddr;
use std::time::Instant;

use pingora::{Error, ErrorType};
use tokio::net::TcpStream;

use crate::core::upstream::Upstream;

/// Idle connections one worker thread keeps, over all upstreams (nginx's `keepalive` is per
/// worker too).
const MOST_IDLE: usize = 128;

/// What a connection's read buffer starts with; it grows for larger heads and is trimmed back
/// before the connection is pooled.
pub const READ_BUFFER: usize = 16 * 1024;
const KEPT_BUFFER: usize = 64 * 1024;

/// A connection to one upstream, with its own read buffer.
pub struct Connection {
    pub stream: TcpStream,
    pub buf: Vec<u8>,
    /// Whether it carried an answer before: then the upstream may have closed it meanwhile.
    pub reused: bool,
}

struct Idle {
    address: SocketAddr,
    expires: Instant,
    connection: Connection,
}

thread_local! {
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

/// The most recently pooled idle connection to `upstream` that is still within its
/// `idle_timeout` and has been quiet since its last answer.
pub fn take(upstream: &Upstream) -> Option<Connection> {
    IDLE.with_borrow_mut(|idle| {
        let now = Instant::now();
        // Upstreams have their own idle timeouts: the list is not in order of expiry.
        idle.retain(|i| i.expires > now);
        while let Some(newest) = idle.iter().rposition(|i| i.address == upstream.address) {
            let mut connection = idle.remove(newest).connection;
            if quiet(&connection.stream) {
                connection.reused = true;
                return Some(connection);
            }
        }
        None
    })
}

/// Whether an idle connection has said nothing since its last answer. Bytes that came
/// unasked (a late body, a `408` before closing) or a close would otherwise be read as the
/// next request's answer. `try_read` costs no system call while the reactor has seen nothing
/// on the socket, which is the usual case.
fn quiet(stream: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// Keeps `connection`, which has just finished an exchange cleanly, for the next request.
pub fn give_back(upstream: &Upstream, mut connection: Connection) {
    connection.buf.clear();
    if connection.buf.capacity() > KEPT_BUFFER {
        connection.buf = Vec::with_capacity(READ_BUFFER);
    }
    IDLE.with_borrow_mut(|idle| {
        if idle.len() == MOST_IDLE {
            idle.remove(0);
        }
        idle.push(Idle {
            address: upstream.address,
            expires: Instant::now() + upstream.idle_timeout,
            connection,
        });
    });
}

/// Drops this thread's idle connections to `upstream`: one was found closed, so the upstream
/// restarted or timed them out, and the older ones are closed too.
pub fn forget(upstream: &Upstream) {
    IDLE.with_borrow_mut(|idle| idle.retain(|i| i.address != upstream.address));
}

/// A new connection to `upstream`, within its connect timeout, with Nagle off (a request head
/// goes out in one write). Errors read as Pingora's do, so both upstream paths log alike.
pub async fn connect(upstream: &Upstream) -> Result<Connection, Box<Error>> {
    let address = upstream.address;
    let stream =
        match tokio::time::timeout(upstream.connect_timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                let etype = match e.kind() {
                    std::io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                    std::io::ErrorKind::TimedOut => ErrorType::ConnectTimedout,
                    _ => match e.raw_os_error() {
                        Some(libc::ENETUNREACH | libc::EHOSTUNREACH) => ErrorType::ConnectNoRoute,
                        _ => ErrorType::ConnectError,
                    },
                };
                return Err(Error::because(
                    etype,
                    format!("Fail to connect to {address}"),
                    e,
                ));
            }
            Err(_) => {
                return Err(Error::explain(
                    ErrorType::ConnectTimedout,
                    format!(
                        "timeout {:?} connecting to server {address}",
                        upstream.connect_timeout
                    ),
                ))
            }
        };
    stream
        .set_nodelay(true)
        .map_err(|e| Error::because(ErrorType::SocketError, "setting TCP_NODELAY", e))?;
    Ok(Connection {
        stream,
        buf: Vec::with_capacity(READ_BUFFER),
        reused: false,
    })
}
