//! Writing spillway's own answers: files, redirects and errors.
//!
//! Each response is assembled in the connection's output buffer and sent with as few writes as
//! possible: a redirect, an error or a small file is one `write`; a large file goes out in
//! 128 KiB chunks (or with `sendfile`), the head riding with the first one.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use pingora::http::ResponseHeader;
use pingora::protocols::http::ServerSession;
use pingora::protocols::Stream;
use tokio::io::AsyncWriteExt;

use crate::core::answer::{Answer, LocalFile, Redirect, Reject};
use crate::core::authorize::Denial;
use crate::core::cors::{Cors, Grant, Preflight};
use crate::fs::read::read_at;
use crate::fs::zero_copy;
use crate::http::file::{self, Body, FilePlan};
use crate::wire::http1::{Persistence, ResponseHead};

/// Large enough to keep syscalls per byte low, small enough that many concurrent downloads stay
/// within a few MiB: each connection holds at most one chunk.
const CHUNK: usize = 128 * 1024;

/// Bodies this large go out with `sendfile` when the connection allows it: below it, one copy
/// into the response buffer costs less than setting zero-copy up.
const ZERO_COPY_MIN: u64 = CHUNK as u64;
/// The most one `sendfile` call is asked to send (and `cachestat` to vouch for).
const ZERO_COPY_PIECE: u64 = 4 << 20;

/// Writes all of `bytes` to an HTTP/1 client, which must take them within `send_timeout`.
pub(crate) async fn send_all(
    stream: &mut Stream,
    bytes: &[u8],
    send_timeout: Duration,
) -> io::Result<()> {
    let write = async {
        stream.write_all(bytes).await?;
        stream.flush().await
    };
    tokio::time::timeout(send_timeout, write)
        .await
        .map_err(|_| stopped_reading())?
}

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
    /// Body bytes sent (or, when cut short, handed on to be sent).
    pub body_bytes: u64,
}

/// One response, on whichever protocol the request came: every answer is written through
/// this one writer, and only the last step (bytes on an HTTP/1 connection, or frames on an
/// HTTP/2 stream) differs.
pub struct Reply<'a> {
    pub to: To<'a>,
    /// Where the response is assembled: on HTTP/1 the head and body bytes, sent together; on
    /// HTTP/2 body bytes (the head goes as a HEADERS frame). Empty between responses.
    pub out: &'a mut Vec<u8>,
    /// HEAD: the head of the response GET would get, no body.
    pub head_only: bool,
    pub send_timeout: Duration,
    /// Body bytes of this response so far.
    pub body_bytes: u64,
}

/// The wire a reply goes out on.
pub enum To<'a> {
    H1 {
        stream: &'a mut Stream,
        persistence: Persistence,
        zero_copy: &'a mut ZeroCopy,
    },
    /// Through a Pingora server session: an h2 stream, or an HTTP/1 request that Pingora's
    /// proxy failed to relay.
    Session {
        session: &'a mut ServerSession,
        head: Option<Box<ResponseHeader>>,
    },
}

impl<'a> Reply<'a> {
    /// An HTTP/1 response after which the connection closes (a refusal, a broken head, the
    /// admin listener's pages); its bodies are small, so `zero_copy` is `Unavailable`.
    pub fn closing(
        stream: &'a mut Stream,
        out: &'a mut Vec<u8>,
        zero_copy: &'a mut ZeroCopy,
        send_timeout: Duration,
    ) -> Reply<'a> {
        Reply {
            to: To::H1 {
                stream,
                persistence: Persistence::Close,
                zero_copy,
            },
            out,
            head_only: false,
            send_timeout,
            body_bytes: 0,
        }
    }
}

impl Reply<'_> {
    fn start(&mut self, status: StatusCode) {
        match &mut self.to {
            To::H1 { .. } => {
                ResponseHead::start(self.out, status);
            }
            To::Session { head, .. } => {
                *head = ResponseHeader::build(status, Some(8)).ok().map(Box::new)
            }
        }
    }

    fn header<N>(&mut self, name: N, value: impl AsRef<[u8]>) -> &mut Self
    where
        N: AsRef<str> + pingora::http::IntoCaseHeaderName,
    {
        match &mut self.to {
            To::H1 { .. } => {
                ResponseHead::on(self.out).header(name.as_ref(), value);
            }
            To::Session { head, .. } => {
                if let (Some(head), Ok(value)) =
                    (head, http::HeaderValue::from_bytes(value.as_ref()))
                {
                    let _ = head.append_header(name, value);
                }
            }
        }
        self
    }

    fn number(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.header(name, value.to_string())
    }

    /// Ends the head. On HTTP/1 it waits in the buffer for the body to join it.
    async fn end_head(&mut self) -> io::Result<()> {
        match &mut self.to {
            To::H1 { persistence, .. } => {
                ResponseHead::on(self.out).finish(*persistence);
                Ok(())
            }
            To::Session { session, head } => {
                let head = head
                    .take()
                    .ok_or_else(|| io::Error::other("no response head"))?;
                session
                    .write_response_header(head)
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))
            }
        }
    }

    /// Writes out what is buffered and empties the buffer.
    async fn flush(&mut self) -> io::Result<()> {
        match &mut self.to {
            To::H1 { stream, .. } => send_all(stream, self.out, self.send_timeout).await?,
            To::Session { session, .. } => {
                // The buffer itself goes to h2, not a copy; the next piece gets a new one.
                let bytes = Bytes::from(std::mem::take(self.out));
                session
                    .write_response_body(bytes, false)
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))?;
            }
        }
        self.out.clear();
        Ok(())
    }

    /// Sends what is left and ends the response (an HTTP/2 stream with END_STREAM).
    async fn finish(&mut self) -> io::Result<()> {
        match &mut self.to {
            To::H1 { .. } if self.out.is_empty() => Ok(()),
            To::H1 { .. } => self.flush().await,
            To::Session { session, .. } => {
                let bytes = Bytes::from(std::mem::take(self.out));
                session
                    .write_response_body(bytes, true)
                    .await
                    .map_err(|e| io::Error::other(e.to_string()))
            }
        }
    }
}

/// A connection's way of sending file bytes straight from the page cache: set up once, on the
/// first body large enough to use it.
#[derive(Default)]
pub enum ZeroCopy {
    #[default]
    Untried,
    /// Shared with the send in progress, which also needs the rest of the reply.
    Ready(Arc<zero_copy::Socket>),
    /// TLS (every byte must pass through the encrypting stream), or setting up failed.
    Unavailable,
}

impl ZeroCopy {
    /// The connection's zero-copy socket, duplicated from `stream` on first use.
    fn socket(&mut self, stream: &Stream) -> Option<Arc<zero_copy::Socket>> {
        if let ZeroCopy::Untried = self {
            *self = match plain_tcp(stream).map(zero_copy::Socket::duplicate) {
                Some(Ok(socket)) => ZeroCopy::Ready(Arc::new(socket)),
                Some(Err(e)) => {
                    tracing::debug!("no zero-copy on this connection: {e}");
                    ZeroCopy::Unavailable
                }
                None => ZeroCopy::Unavailable,
            };
        }
        match self {
            ZeroCopy::Ready(socket) => Some(Arc::clone(socket)),
            _ => None,
        }
    }
}

/// The socket of a plain TCP connection, borrowed for as long as the stream is.
pub fn plain_tcp(stream: &Stream) -> Option<std::os::fd::BorrowedFd<'_>> {
    use std::os::fd::AsRawFd;
    let tcp = stream
        .as_any()
        .downcast_ref::<pingora::protocols::l4::stream::Stream>()?;
    // SAFETY: the descriptor belongs to `tcp`, which stays open for the lifetime of the
    // borrow this returns (Pingora offers `AsRawFd` only, not `AsFd`).
    Some(unsafe { std::os::fd::BorrowedFd::borrow_raw(tcp.as_raw_fd()) })
}

/// Sends `answer` to a request of `method` with `headers`, under a route with `cors` (its
/// fields go on files and redirects). Returns what went out.
pub async fn send(
    reply: &mut Reply<'_>,
    method: &Method,
    headers: &HeaderMap,
    answer: &Answer<'_>,
    cors: Option<&Cors>,
) -> Sent {
    let access = CrossOrigin {
        grant: cors.and_then(|c| c.grant(headers)),
        varies: cors.is_some_and(Cors::varies),
    };
    let (status, sent) = match answer {
        Answer::Serve(local) => {
            let plan = file::plan(method, headers, &local.meta);
            (
                plan.status,
                file_response(reply, plan, local, &access).await,
            )
        }
        Answer::AddSlash(location) => (
            StatusCode::MOVED_PERMANENTLY,
            add_slash(reply, location, &access).await,
        ),
        Answer::Redirect(r) => (StatusCode::FOUND, redirect(reply, r, &access).await),
        Answer::Preflight(p) => (StatusCode::NO_CONTENT, preflight(reply, p).await),
        Answer::Reject(reject) => (reject.status(), self::reject(reply, reject).await),
        Answer::Denied(denial) => (denial.status, denied(reply, denial).await),
        Answer::Challenge(key_authorization) => (
            StatusCode::OK,
            text(reply, StatusCode::OK, "text/plain", None, key_authorization).await,
        ),
    };
    Sent {
        status,
        cut_short: sent.err(),
        body_bytes: reply.body_bytes,
    }
}

/// The CORS fields of an answer for a route's file or redirect.
struct CrossOrigin {
    grant: Option<Grant>,
    /// Listed origins are echoed: the answer differs per `Origin`, even without one.
    varies: bool,
}

impl CrossOrigin {
    /// `expose`: what a page may read besides the safelisted fields (a player reading ranges
    /// needs `Content-Range`).
    fn write(&self, reply: &mut Reply<'_>, expose: bool) {
        if let Some(grant) = &self.grant {
            reply.header("Access-Control-Allow-Origin", grant.allow_origin.as_bytes());
            if expose {
                reply.header(
                    "Access-Control-Expose-Headers",
                    "Accept-Ranges, Content-Range, ETag",
                );
            }
        }
        if self.varies {
            reply.header("Vary", "Origin");
        }
    }
}

/// `204` to a preflight: what the origin may do, for how long.
async fn preflight(reply: &mut Reply<'_>, preflight: &Preflight) -> io::Result<()> {
    reply.start(StatusCode::NO_CONTENT);
    if let Some(grant) = &preflight.grant {
        reply
            .header("Access-Control-Allow-Origin", grant.allow_origin.as_bytes())
            .header(
                "Access-Control-Allow-Methods",
                preflight.allow_methods.as_bytes(),
            );
        if let Some(headers) = &preflight.allow_headers {
            reply.header("Access-Control-Allow-Headers", headers.as_bytes());
        }
        reply.number("Access-Control-Max-Age", preflight.max_age);
    }
    if preflight.varies {
        reply.header("Vary", "Origin");
    }
    reply.end_head().await?;
    reply.finish().await
}

async fn redirect(
    reply: &mut Reply<'_>,
    redirect: &Redirect,
    access: &CrossOrigin,
) -> io::Result<()> {
    reply.start(StatusCode::FOUND);
    access.write(reply, false);
    reply
        .header("Location", redirect.location.as_bytes())
        .header("Cache-Control", redirect.cache_control.header_value());
    for cookie in redirect.cookies.iter().flat_map(|c| c.iter()) {
        reply.header("Set-Cookie", cookie.as_bytes());
    }
    reply.number("Content-Length", 0);
    reply.end_head().await?;
    reply.finish().await
}

/// A 301 to the same path with a trailing slash.
async fn add_slash(reply: &mut Reply<'_>, location: &str, access: &CrossOrigin) -> io::Result<()> {
    reply.start(StatusCode::MOVED_PERMANENTLY);
    access.write(reply, false);
    reply
        .header("Location", location.as_bytes())
        .number("Content-Length", 0);
    reply.end_head().await?;
    reply.finish().await
}

/// The application's "no" to an authorization check, as it gave it.
async fn denied(reply: &mut Reply<'_>, denial: &Denial) -> io::Result<()> {
    reply.start(denial.status);
    for (name, value) in &denial.headers {
        reply.header(name, value.as_bytes());
    }
    reply.number("Content-Length", denial.body.len() as u64);
    reply.end_head().await?;
    if !reply.head_only {
        reply.out.extend_from_slice(&denial.body);
        reply.body_bytes += denial.body.len() as u64;
    }
    reply.finish().await
}

async fn reject(reply: &mut Reply<'_>, reject: &Reject) -> io::Result<()> {
    error(reply, reject.status(), reject.extra_header()).await
}

/// A short plain-text error, so `curl` users see why.
pub async fn error(
    reply: &mut Reply<'_>,
    status: StatusCode,
    extra: Option<(&'static str, &'static str)>,
) -> io::Result<()> {
    let body = format!("{status}\n");
    text(reply, status, "text/plain; charset=utf-8", extra, &body).await
}

/// A whole response with a small body held in memory.
pub async fn text(
    reply: &mut Reply<'_>,
    status: StatusCode,
    content_type: &'static str,
    extra: Option<(&'static str, &'static str)>,
    body: &str,
) -> io::Result<()> {
    reply.start(status);
    reply
        .header("Content-Type", content_type)
        .number("Content-Length", body.len() as u64);
    if let Some((name, value)) = extra {
        reply.header(name, value);
    }
    reply.end_head().await?;
    if !reply.head_only {
        reply.out.extend_from_slice(body.as_bytes());
        reply.body_bytes += body.len() as u64;
    }
    reply.finish().await
}

/// Serves a local file as its plan says: 200, 206 (single or multipart), 304, 412 or 416.
async fn file_response(
    reply: &mut Reply<'_>,
    plan: FilePlan,
    local: &LocalFile<'_>,
    access: &CrossOrigin,
) -> io::Result<()> {
    let length = file_head(reply, &plan, local, access);
    reply.end_head().await?;
    if reply.head_only || length == 0 {
        return reply.finish().await;
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
                reply.out.extend_from_slice(part.as_bytes());
                reply.body_bytes += part.len() as u64;
                send_range(reply, file, range.start, range.length()).await?;
            }
            let closing = file::closing_boundary(&boundary);
            reply.out.extend_from_slice(closing.as_bytes());
            reply.body_bytes += closing.len() as u64;
        }
    }
    reply.finish().await
}

// Long on purpose: a file response's header fields in the order they are written.
/// Writes a file response's head; returns the body's length.
fn file_head(
    reply: &mut Reply<'_>,
    plan: &FilePlan,
    local: &LocalFile<'_>,
    access: &CrossOrigin,
) -> u64 {
    let FilePlan {
        status,
        validators,
        body,
    } = plan;
    let status = *status;
    let route = local.route;
    reply.start(status);
    access.write(reply, true);
    reply.header("Accept-Ranges", "bytes");
    if !route.precompressed.is_empty() {
        // The same URL has different bodies per Accept-Encoding: caches must key on it.
        reply.header("Vary", "Accept-Encoding");
    }
    let representation = matches!(
        status,
        StatusCode::OK | StatusCode::PARTIAL_CONTENT | StatusCode::NOT_MODIFIED
    );
    if representation {
        reply
            .header("ETag", validators.etag.as_bytes())
            .header("Last-Modified", validators.last_modified.as_bytes());
        if let Some(cache_control) = &route.cache_control {
            reply.header("Cache-Control", cache_control);
        }
    }
    if representation && status != StatusCode::NOT_MODIFIED {
        reply.header("X-Content-Type-Options", "nosniff");
        if let Some(encoding) = local.encoding {
            reply.header("Content-Encoding", encoding.token());
        }
    }
    let content_type = local.content_type.as_bytes();
    let length = match body {
        Body::Empty => 0,
        Body::Whole { length } => {
            reply.header("Content-Type", content_type);
            *length
        }
        Body::Single { range, total } => {
            reply.header("Content-Type", content_type).header(
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
            reply.header(
                "Content-Type",
                format!("multipart/byteranges; boundary={boundary}"),
            );
            file::multipart_length(boundary, &local.content_type, ranges, *total)
        }
    };
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        reply.header("Content-Range", format!("bytes */{}", local.meta.len()));
    }
    if status != StatusCode::NOT_MODIFIED {
        reply.number("Content-Length", length);
    }
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
    let socket = match &mut reply.to {
        To::H1 {
            stream, zero_copy, ..
        } if length >= ZERO_COPY_MIN => zero_copy.socket(stream),
        _ => None,
    };
    if let Some(socket) = &socket {
        // The stream's own write buffer is empty between responses, so bytes written to the
        // socket directly cannot overtake any.
        tokio::time::timeout(reply.send_timeout, socket.send_before_file(reply.out))
            .await
            .map_err(|_| stopped_reading())??;
        reply.out.clear();
    }
    let end = start + length;
    let mut offset = start;
    while offset < end {
        let left = end - offset;
        let sent = match &socket {
            Some(socket) if zero_copy::cached(file, offset, left.min(ZERO_COPY_PIECE)) => {
                // What a copied piece left in the buffer goes first, or these bytes would
                // overtake it: a non-blocking read stops short where the page cache does, and
                // the read-ahead it starts can fill the rest before this check.
                if !reply.out.is_empty() {
                    tokio::time::timeout(reply.send_timeout, socket.send_before_file(reply.out))
                        .await
                        .map_err(|_| stopped_reading())??;
                    reply.out.clear();
                }
                let piece = left.min(ZERO_COPY_PIECE) as usize;
                tokio::time::timeout(reply.send_timeout, socket.send_file(file, offset, piece))
                    .await
                    .map_err(|_| stopped_reading())??
            }
            _ => copy_piece(reply, file, offset, left.min(CHUNK as u64) as usize).await?,
        };
        if sent == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file truncated while being sent",
            ));
        }
        reply.body_bytes += sent as u64;
        offset += sent as u64;
    }
    Ok(())
}

/// Appends up to `want` bytes of `file` at `offset` to the buffer and sends it; the last piece
/// of a response stays buffered so the writes that end it can join it. Returns the bytes read.
async fn copy_piece(
    reply: &mut Reply<'_>,
    file: &Arc<File>,
    offset: u64,
    want: usize,
) -> io::Result<usize> {
    let at = reply.out.len();
    reply.out.resize(at + want, 0);
    let n = read_at(file, offset, &mut reply.out[at..]).await?;
    reply.out.truncate(at + n);
    if n > 0 && reply.out.len() >= CHUNK {
        reply.flush().await?;
    }
    Ok(n)
}
