//! Writing spillway's own responses: redirects, errors and local files.
//!
//! Each response is assembled in the connection's output buffer and sent with as few writes as
//! possible: a redirect, an error or a small file is one `write`; a large file goes out in
//! 128 KiB chunks, the head riding with the first one.

use std::fs::File;
use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method};
use pingora::protocols::Stream;
use tokio::io::AsyncWriteExt;

use crate::decide::{LocalFile, Redirect, Reject};
use crate::http1::{Persistence, ResponseHead};
use crate::read::read_at;
use crate::serve::{self, Body, FilePlan};
use crate::zero_copy;

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

/// One response on a connection.
pub struct Reply<'a> {
    pub stream: &'a mut Stream,
    /// The connection's output buffer, empty between responses.
    pub out: &'a mut Vec<u8>,
    /// HEAD: the head of the response GET would get, no body.
    pub head_only: bool,
    pub persistence: Persistence,
    /// The connection's socket when file bytes may go into it directly (plain TCP; never
    /// under TLS, where every byte must pass through the encrypting stream).
    pub zero_copy: Option<RawFd>,
}

impl Reply<'_> {
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

pub async fn redirect(reply: &mut Reply<'_>, redirect: &Redirect) -> io::Result<u16> {
    let mut head = ResponseHead::start(reply.out, 302);
    head.header("Location", redirect.location.as_bytes())
        .header("Cache-Control", redirect.cache_control.header_value())
        .number("Content-Length", 0);
    head.finish(reply.persistence);
    reply.send().await?;
    Ok(302)
}

/// Moves a 301 to the same path with a trailing slash.
pub async fn add_slash(reply: &mut Reply<'_>, location: &str) -> io::Result<u16> {
    let mut head = ResponseHead::start(reply.out, 301);
    head.header("Location", location.as_bytes())
        .number("Content-Length", 0);
    head.finish(reply.persistence);
    reply.send().await?;
    Ok(301)
}

pub async fn reject(reply: &mut Reply<'_>, reject: &Reject) -> io::Result<u16> {
    let extra = match reject {
        Reject::MethodNotAllowed => Some(("Allow", "GET, HEAD")),
        Reject::Sign(_) => Some(("Retry-After", "5")),
        _ => None,
    };
    error(reply, reject.status(), extra).await
}

/// A short plain-text error, so `curl` users see why.
pub async fn error(
    reply: &mut Reply<'_>,
    status: u16,
    extra: Option<(&str, &str)>,
) -> io::Result<u16> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = format!("{status} {reason}\n");
    let mut head = ResponseHead::start(reply.out, status);
    head.header("Content-Type", "text/plain; charset=utf-8")
        .number("Content-Length", body.len() as u64);
    if let Some((name, value)) = extra {
        head.header(name, value);
    }
    head.finish(reply.persistence);
    if !reply.head_only {
        reply.out.extend_from_slice(body.as_bytes());
    }
    reply.send().await?;
    Ok(status)
}

/// Serves a local file as `serve::plan` says: 200, 206 (single or multipart), 304, 412 or 416.
pub async fn file(
    reply: &mut Reply<'_>,
    method: &Method,
    headers: &HeaderMap,
    local: LocalFile<'_>,
) -> io::Result<u16> {
    let LocalFile {
        route,
        file,
        meta,
        content_type,
        encoding,
    } = local;
    let FilePlan {
        status,
        validators,
        body,
    } = serve::plan(method, headers, &meta);

    let mut head = ResponseHead::start(reply.out, status);
    head.header("Accept-Ranges", "bytes");
    if !route.precompressed.is_empty() {
        // The same URL has different bodies per Accept-Encoding: caches must key on it.
        head.header("Vary", "Accept-Encoding");
    }
    if matches!(status, 200 | 206 | 304) {
        head.header("ETag", validators.etag.as_bytes())
            .header("Last-Modified", validators.last_modified.as_bytes());
        if let Some(cache_control) = &route.cache_control {
            head.header("Cache-Control", cache_control);
        }
    }
    if matches!(status, 200 | 206) {
        head.header("X-Content-Type-Options", "nosniff");
        if let Some(encoding) = encoding {
            head.header("Content-Encoding", encoding.token());
        }
    }
    let length = match &body {
        Body::Empty => 0,
        Body::Whole { length } => {
            head.header("Content-Type", content_type.as_bytes());
            *length
        }
        Body::Single { range, total } => {
            head.header("Content-Type", content_type.as_bytes()).header(
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
            serve::multipart_length(boundary, &content_type, ranges, *total)
        }
    };
    if status == 416 {
        head.header("Content-Range", format!("bytes */{}", meta.len()));
    }
    if status != 304 {
        head.number("Content-Length", length);
    }
    head.finish(reply.persistence);

    if reply.head_only || length == 0 {
        reply.send().await?;
        return Ok(status);
    }
    let file = Arc::new(file);
    match body {
        Body::Empty => {}
        Body::Whole { length } => send_range(reply, &file, 0, length).await?,
        Body::Single { range, .. } => send_range(reply, &file, range.start, range.length()).await?,
        Body::Multi {
            ranges,
            total,
            boundary,
        } => {
            for range in ranges {
                let part = serve::part_header(&boundary, &content_type, range, total);
                reply.out.extend_from_slice(part.as_bytes());
                send_range(reply, &file, range.start, range.length()).await?;
            }
            reply
                .out
                .extend_from_slice(serve::closing_boundary(&boundary).as_bytes());
        }
    }
    if !reply.out.is_empty() {
        reply.send().await?;
    }
    Ok(status)
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
    let socket = match reply.zero_copy {
        Some(raw) if length >= ZERO_COPY_MIN => {
            // The stream's own write buffer is empty between responses, so bytes written to
            // the socket directly cannot overtake any.
            let socket = zero_copy::Socket::new(raw)?;
            tokio::time::timeout(SEND_TIMEOUT, socket.send_before_file(reply.out))
                .await
                .map_err(|_| stopped_reading())??;
            reply.out.clear();
            Some(socket)
        }
        _ => None,
    };
    let end = start + length;
    let mut offset = start;
    while offset < end {
        let left = end - offset;
        let sent = match &socket {
            Some(socket) if zero_copy::cached(file, offset, left.min(ZERO_COPY_PIECE)) => {
                let piece = left.min(ZERO_COPY_PIECE) as usize;
                tokio::time::timeout(SEND_TIMEOUT, socket.send_file(file, offset, piece))
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
        reply.send().await?;
    }
    Ok(n)
}
