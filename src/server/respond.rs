//! Writing spillway's own answers: files, redirects and errors.
//!
//! Each response is assembled in the connection's output buffer and sent with as few writes as
//! possible: a redirect, an error or a small file is one `write`; a large file goes out in
//! 128 KiB chunks (or with `sendfile`), the head riding with the first one.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use pingora::protocols::Stream;
use tokio::io::AsyncWriteExt;

use crate::core::answer::{Answer, LocalFile, Redirect, Reject};
use crate::fs::read::read_at;
use crate::fs::zero_copy;
use crate::http::file::{self, Body, FilePlan};
use crate::server::http1::{Persistence, ResponseHead};

/// Large enough to keep syscalls per byte low, small enough that many concurrent downloads stay
/// within a few MiB: each connection holds at most one chunk.
const CHUNK: usize = 128 * 1024;

/// A client that accepts nothing for this long is dropped (nginx's `send_timeout`).
pub const SEND_TIMEOUT: Duration = Duration::from_secs(60);

/// Bodies this large go out with `sendfile` when the connection allows it: below it, one copy
/// into the response buffer costs less than setting zero-copy up.
const ZERO_COPY_MIN: u64 = CHUNK as u64;
/// The most one `sendfile` call is asked to send (and `cachestat` to vouch for).
const ZERO_COPY_PIECE: u64 = 4 << 20;

fn stopped_reading() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "client stopped reading")
}

/// What went out for one response.
#[derive(Debug)]
pub struct Sent {
    /// The status of the response head that was sent (or started).
    pub status: StatusCode,
    /// Set when the response did not reach the client whole: the client went away or stopped
    /// reading, or the file shrank while it was being sent.
    pub cut_short: Option<io::Error>,
}

/// The connection's bytes out: the stream and the buffer a response is assembled in.
pub struct Wire<'a> {
    pub stream: &'a mut Stream,
    /// Empty between responses.
    pub out: &'a mut Vec<u8>,
}

impl Wire<'_> {
    /// Writes out what is buffered and empties the buffer.
    async fn send(&mut self) -> io::Result<()> {
        let write = async {
            self.stream.write_all(self.out).await?;
            self.stream.flush().await
        };
        tokio::time::timeout(SEND_TIMEOUT, write)
            .await
            .map_err(|_| stopped_reading())??;
        self.out.clear();
        Ok(())
    }
}

/// One response on a connection.
pub struct Reply<'a> {
    pub wire: Wire<'a>,
    /// HEAD: the head of the response GET would get, no body.
    pub head_only: bool,
    pub persistence: Persistence,
    pub zero_copy: &'a mut ZeroCopy,
}

/// A connection's way of sending file bytes straight from the page cache: set up once, on the
/// first body large enough to use it.
#[derive(Default)]
pub enum ZeroCopy {
    #[default]
    Untried,
    Ready(zero_copy::Socket),
    /// TLS (every byte must pass through the encrypting stream), or setting up failed.
    Unavailable,
}

impl ZeroCopy {
    /// The connection's zero-copy socket, duplicated from `stream` on first use.
    fn socket(&mut self, stream: &Stream) -> Option<&zero_copy::Socket> {
        if let ZeroCopy::Untried = self {
            *self = match plain_tcp(stream).map(zero_copy::Socket::duplicate) {
                Some(Ok(socket)) => ZeroCopy::Ready(socket),
                Some(Err(e)) => {
                    tracing::debug!("no zero-copy on this connection: {e}");
                    ZeroCopy::Unavailable
                }
                None => ZeroCopy::Unavailable,
            };
        }
        match self {
            ZeroCopy::Ready(socket) => Some(socket),
            _ => None,
        }
    }
}

/// The socket of a plain TCP connection, borrowed for as long as the stream is.
fn plain_tcp(stream: &Stream) -> Option<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsRawFd;
    let tcp = stream
        .as_any()
        .downcast_ref::<pingora::protocols::l4::stream::Stream>()?;
    // SAFETY: the descriptor belongs to `tcp`, which stays open for the lifetime of the
    // borrow this returns (Pingora offers `AsRawFd` only, not `AsFd`).
    Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(tcp.as_raw_fd()) })
}

/// Sends `answer` to a request of `method` with `headers`. Returns what went out.
pub async fn send(
    reply: &mut Reply<'_>,
    method: &Method,
    headers: &HeaderMap,
    answer: &Answer<'_>,
) -> Sent {
    let (status, sent) = match answer {
        Answer::Serve(local) => {
            let plan = file::plan(method, headers, &local.meta);
            (plan.status, file_response(reply, plan, local).await)
        }
        Answer::AddSlash(location) => (
            StatusCode::MOVED_PERMANENTLY,
            add_slash(reply, location).await,
        ),
        Answer::Redirect(r) => (StatusCode::FOUND, redirect(reply, r).await),
        Answer::Reject(reject) => (reject.status(), self::reject(reply, reject).await),
    };
    Sent {
        status,
        cut_short: sent.err(),
    }
}

async fn redirect(reply: &mut Reply<'_>, redirect: &Redirect) -> io::Result<()> {
    let mut head = ResponseHead::start(reply.wire.out, StatusCode::FOUND);
    head.header("Location", redirect.location.as_bytes())
        .header("Cache-Control", redirect.cache_control.header_value())
        .number("Content-Length", 0);
    head.finish(reply.persistence);
    reply.wire.send().await
}

/// A 301 to the same path with a trailing slash.
async fn add_slash(reply: &mut Reply<'_>, location: &str) -> io::Result<()> {
    let mut head = ResponseHead::start(reply.wire.out, StatusCode::MOVED_PERMANENTLY);
    head.header("Location", location.as_bytes())
        .number("Content-Length", 0);
    head.finish(reply.persistence);
    reply.wire.send().await
}

async fn reject(reply: &mut Reply<'_>, reject: &Reject) -> io::Result<()> {
    error(reply, reject.status(), reject.extra_header()).await
}

/// A short plain-text error, so `curl` users see why.
pub async fn error(
    reply: &mut Reply<'_>,
    status: StatusCode,
    extra: Option<(&str, &str)>,
) -> io::Result<()> {
    let body = format!("{status}\n");
    let mut head = ResponseHead::start(reply.wire.out, status);
    head.header("Content-Type", "text/plain; charset=utf-8")
        .number("Content-Length", body.len() as u64);
    if let Some((name, value)) = extra {
        head.header(name, value);
    }
    head.finish(reply.persistence);
    if !reply.head_only {
        reply.wire.out.extend_from_slice(body.as_bytes());
    }
    reply.wire.send().await
}

/// Serves a local file as its plan says: 200, 206 (single or multipart), 304, 412 or 416.
async fn file_response(
    reply: &mut Reply<'_>,
    plan: FilePlan,
    local: &LocalFile<'_>,
) -> io::Result<()> {
    let length = file_head(reply, &plan, local);
    if reply.head_only || length == 0 {
        return reply.wire.send().await;
    }
    let file = &local.file;
    match plan.body {
        Body::Empty => {}
        Body::Whole { length } => send_range(reply, file, 0, length).await?,
        Body::Single { range, .. } => send_range(reply, file, range.start, range.length()).await?,
        Body::Multi {
            ranges,
            total,
            boundary,
        } => {
            for range in ranges {
                let part = file::part_header(&boundary, &local.content_type, range, total);
                reply.wire.out.extend_from_slice(part.as_bytes());
                send_range(reply, file, range.start, range.length()).await?;
            }
            reply
                .wire
                .out
                .extend_from_slice(file::closing_boundary(&boundary).as_bytes());
        }
    }
    if !reply.wire.out.is_empty() {
        reply.wire.send().await?;
    }
    Ok(())
}

/// Writes a file response's head into the buffer; returns the body's length.
fn file_head(reply: &mut Reply<'_>, plan: &FilePlan, local: &LocalFile<'_>) -> u64 {
    let FilePlan {
        status,
        validators,
        body,
    } = plan;
    let status = *status;
    let route = local.route;
    let mut head = ResponseHead::start(reply.wire.out, status);
    head.header("Accept-Ranges", "bytes");
    if !route.precompressed.is_empty() {
        // The same URL has different bodies per Accept-Encoding: caches must key on it.
        head.header("Vary", "Accept-Encoding");
    }
    let representation = matches!(
        status,
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
    );
    if representation {
        head.header("ETag", validators.etag.as_bytes())
            .header("Last-Modified", validators.last_modified.as_bytes());
        if let Some(cache_control) = &route.cache_control {
            head.header("Cache-Control", cache_control);
        }
    }
    if representation && status != StatusCode::NOT_MODIFIED {
        head.header("X-Content-Type-Options", "nosniff");
        if let Some(encoding) = local.encoding {
            head.header("Content-Encoding", encoding.token());
        }
    }
    let content_type = local.content_type.as_bytes();
    let length = match body {
        Body::Empty => 0,
        Body::Whole { length } => {
            head.header("Content-Type", content_type);
            *length
        }
        Body::Single { range, total } => {
            head.header("Content-Type", content_type).header(
                "Content-Range",
                format!("bytes {}-{}/{total}", range.start, range.end),
            );
            range.length()
        }
        Body::Multi {
            ranges,
            total,
            boundary,
        } => {
            head.header(
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            );
            file::multipart_length(boundary, &local.content_type, ranges, *total)
        }
    };
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        head.header("Content-Range", format!("bytes */{}", local.meta.len()));
    }
    if status != StatusCode::NOT_MODIFIED {
        head.number("Content-Length", length);
    }
    head.finish(reply.persistence);
    length
}

/// Sends exactly `length` bytes of `file` from `start`, after whatever is already buffered
/// (the head, a part header). If the file shrinks under us the response cannot be completed
/// honestly, so the error ends the connection instead of padding or hanging. (A file replaced
/// by rename, or deleted, keeps its old bytes: we hold the open descriptor.)
async fn send_range(
    reply: &mut Reply<'_>,
    file: &Arc<File>,
    start: u64,
    length: u64,
) -> io::Result<()> {
    let socket = if length >= ZERO_COPY_MIN {
        reply.zero_copy.socket(reply.wire.stream)
    } else {
        None
    };
    if let Some(socket) = socket {
        // The stream's own write buffer is empty between responses, so bytes written to the
        // socket directly cannot overtake any.
        tokio::time::timeout(SEND_TIMEOUT, socket.send_before_file(reply.wire.out))
            .await
            .map_err(|_| stopped_reading())??;
        reply.wire.out.clear();
    }
    let end = start + length;
    let mut offset = start;
    while offset < end {
        let left = end - offset;
        let sent = match socket {
            Some(socket) if zero_copy::cached(file, offset, left.min(ZERO_COPY_PIECE)) => {
                let piece = left.min(ZERO_COPY_PIECE) as usize;
                tokio::time::timeout(SEND_TIMEOUT, socket.send_file(file, offset, piece))
                    .await
                    .map_err(|_| stopped_reading())??
            }
            _ => {
                copy_piece(
                    &mut reply.wire,
                    file,
                    offset,
                    left.min(CHUNK as u64) as usize,
                )
                .await?
            }
        };
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file truncated while being sent",
            ));
        }
        offset += sent as u64;
    }
    Ok(())
}

/// Appends up to `want` bytes of `file` at `offset` to the buffer and sends it; the last piece
/// of a response stays buffered so the writes that end it can join it. Returns the bytes read.
async fn copy_piece(
    wire: &mut Wire<'_>,
    file: &Arc<File>,
    offset: u64,
    want: usize,
) -> io::Result<usize> {
    let at = wire.out.len();
    wire.out.resize(at + want, 0);
    let n = read_at(file, offset, &mut wire.out[at..]).await?;
    wire.out.truncate(at + n);
    if n > 0 && wire.out.len() >= CHUNK {
        wire.send().await?;
    }
    Ok(n)
}
