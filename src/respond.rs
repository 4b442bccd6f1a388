//! Writing spillway's own responses through Pingora: redirects, errors and local files.
//!
//! Every response spillway originates goes through `head` so status, `Content-Length` and the
//! no-body rule for HEAD are handled in one place. Pingora's `respond_error` is avoided: it turns
//! keep-alive off, and body-less redirects need an explicit `Content-Length: 0` or the client
//! waits for a body that never comes (pingora issue #498).

use std::fs::File;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    ACCEPT_RANGES, ALLOW, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE,
    CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION, RETRY_AFTER, VARY, X_CONTENT_TYPE_OPTIONS,
};
use http::HeaderValue;
use http::Method;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::{Error, ErrorType, Result};

use crate::decide::{LocalFile, Redirect, Reject};
use crate::read::read_chunk;
use crate::serve::{self, Body, FilePlan};

/// Large enough to keep syscalls per byte low, small enough that many concurrent downloads stay
/// within a few MiB; `write_response_body` applies back-pressure between chunks.
const CHUNK: usize = 128 * 1024;

/// Starts a response with the headers every spillway response shares.
fn head(status: u16, content_length: u64) -> Result<ResponseHeader> {
    let mut resp = ResponseHeader::build_no_case(status, Some(8))?;
    resp.insert_header(CONTENT_LENGTH, content_length)?;
    Ok(resp)
}

fn is_head(session: &Session) -> bool {
    session.req_header().method == Method::HEAD
}

/// Request bodies up to this size are read and discarded so a rejected upload does not cost
/// the client its keep-alive connection; larger ones close the connection instead.
const DRAIN_LIMIT: u64 = 64 * 1024;

/// Makes the connection reusable after answering without reading the request body.
async fn discard_request_body(session: &mut Session) -> Result<()> {
    let downstream = session.as_downstream_mut();
    if downstream.is_body_empty() {
        return Ok(());
    }
    let length = downstream
        .get_header(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match length {
        Some(n) if n <= DRAIN_LIMIT => {
            downstream.set_total_drain_timeout(Some(std::time::Duration::from_secs(5)));
            downstream.drain_request_body().await
        }
        _ => {
            downstream.set_keepalive(None);
            Ok(())
        }
    }
}

/// Writes `resp` with `body`, leaving the body out for HEAD.
async fn send(session: &mut Session, resp: ResponseHeader, body: Option<Bytes>) -> Result<()> {
    discard_request_body(session).await?;
    let body = body.filter(|b| !b.is_empty() && !is_head(session));
    session
        .write_response_header(Box::new(resp), body.is_none())
        .await?;
    if let Some(body) = body {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

pub async fn redirect(session: &mut Session, redirect: &Redirect) -> Result<()> {
    let mut resp = head(302, 0)?;
    resp.insert_header(LOCATION, redirect.location.as_str())?;
    resp.insert_header(CACHE_CONTROL, redirect.cache_control.header_value())?;
    send(session, resp, None).await
}

/// A short plain-text error, so `curl` users see why.
pub async fn reject(session: &mut Session, reject: &Reject) -> Result<()> {
    let status = reject.status();
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = Bytes::from(format!("{status} {reason}\n"));
    let mut resp = head(status, body.len() as u64)?;
    resp.insert_header(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    )?;
    match reject {
        Reject::MethodNotAllowed => {
            resp.insert_header(ALLOW, HeaderValue::from_static("GET, HEAD"))?
        }
        Reject::Sign(_) => resp.insert_header(RETRY_AFTER, HeaderValue::from_static("5"))?,
        _ => {}
    }
    send(session, resp, Some(body)).await
}

/// Moves a 301 to the same path with a trailing slash.
pub async fn add_slash(session: &mut Session, location: &str) -> Result<()> {
    let mut resp = head(301, 0)?;
    resp.insert_header(LOCATION, location)?;
    send(session, resp, None).await
}

/// Serves a local file as `serve::plan` says: 200, 206 (single or multipart), 304, 412 or 416.
/// Returns the status sent.
pub async fn file(session: &mut Session, local: LocalFile<'_>) -> Result<u16> {
    discard_request_body(session).await?;
    let LocalFile {
        route,
        file,
        meta,
        content_type,
        encoding,
    } = local;
    let req = session.req_header();
    let FilePlan {
        status,
        validators,
        body,
    } = serve::plan(&req.method, &req.headers, &meta);
    let with_body = req.method != Method::HEAD;

    let mut resp = ResponseHeader::build_no_case(status, Some(12))?;
    // Constant values are `from_static`: no copy per response.
    resp.insert_header(ACCEPT_RANGES, HeaderValue::from_static("bytes"))?;
    if !route.precompressed.is_empty() {
        // The same URL has different bodies per Accept-Encoding: caches must key on it.
        resp.insert_header(VARY, HeaderValue::from_static("Accept-Encoding"))?;
    }
    if matches!(status, 200 | 206 | 304) {
        resp.insert_header(ETAG, validators.etag.as_str())?;
        resp.insert_header(LAST_MODIFIED, validators.last_modified.as_str())?;
        if let Some(cache_control) = &route.cache_control {
            resp.insert_header(CACHE_CONTROL, cache_control.clone())?;
        }
    }
    if matches!(status, 200 | 206) {
        resp.insert_header(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"))?;
        if let Some(encoding) = encoding {
            resp.insert_header(CONTENT_ENCODING, HeaderValue::from_static(encoding.token()))?;
        }
    }
    let length = match &body {
        Body::Empty => 0,
        Body::Whole { length } => {
            resp.insert_header(CONTENT_TYPE, content_type.as_ref())?;
            *length
        }
        Body::Single { range, total } => {
            resp.insert_header(CONTENT_TYPE, content_type.as_ref())?;
            resp.insert_header(
                CONTENT_RANGE,
                format!("bytes {}-{}/{total}", range.start, range.end),
            )?;
            range.length()
        }
        Body::Multi {
            ranges,
            total,
            boundary,
        } => {
            resp.insert_header(
                CONTENT_TYPE,
                format!("multipart/byteranges; boundary={boundary}"),
            )?;
            serve::multipart_length(boundary, &content_type, ranges, *total)
        }
    };
    if status == 416 {
        resp.insert_header(CONTENT_RANGE, format!("bytes */{}", meta.len()))?;
    }
    if status != 304 {
        resp.insert_header(CONTENT_LENGTH, length)?;
    }

    let body_follows = with_body && length > 0;
    session
        .write_response_header(Box::new(resp), !body_follows)
        .await?;
    if !body_follows {
        return Ok(status);
    }
    let file = Arc::new(file);
    match body {
        Body::Empty => {}
        Body::Whole { length } => stream(session, &file, 0, length, true).await?,
        Body::Single { range, .. } => {
            stream(session, &file, range.start, range.length(), true).await?
        }
        Body::Multi {
            ranges,
            total,
            boundary,
        } => {
            for range in ranges {
                let part = serve::part_header(&boundary, &content_type, range, total);
                session
                    .write_response_body(Some(Bytes::from(part)), false)
                    .await?;
                stream(session, &file, range.start, range.length(), false).await?;
            }
            let closing = Bytes::from(serve::closing_boundary(&boundary));
            session.write_response_body(Some(closing), true).await?;
        }
    }
    Ok(status)
}

/// Sends exactly `length` bytes of `file` from `start`; `last` marks the end of the response.
/// If the file shrinks under us the response cannot be completed honestly, so the error ends the
/// connection instead of padding or hanging. (A file replaced by rename, or deleted, keeps
/// its old bytes: we hold the open descriptor.)
async fn stream(
    session: &mut Session,
    file: &Arc<File>,
    start: u64,
    length: u64,
    last: bool,
) -> Result<()> {
    let end = start + length;
    let mut offset = start;
    while offset < end {
        let want = (end - offset).min(CHUNK as u64) as usize;
        let chunk = read_chunk(file, offset, want)
            .await
            .map_err(|e| Error::because(ErrorType::FileReadError, "reading file", e))?;
        if chunk.is_empty() {
            return Error::e_explain(ErrorType::FileReadError, "file truncated while being sent");
        }
        offset += chunk.len() as u64;
        session
            .write_response_body(Some(chunk), last && offset >= end)
            .await?;
    }
    Ok(())
}
