//! What a local file's response is: status, validators and body (whole, one range, or
//! `multipart/byteranges`), from its metadata and the request's conditional and Range headers.
//!
//! Pure: it returns a `FilePlan`; `server::respond` writes it.

use std::fs::Metadata;

use http::{HeaderMap, Method, StatusCode};

use crate::http::conditional::{evaluate, Precondition, Validators};
use crate::http::range::{self, ByteRange, Ranges};

/// At most this many ranges in one request, satisfiable or not; more get the whole file (like
/// nginx's `max_ranges`, which counts only satisfiable ones).
pub const MAX_RANGES: usize = 16;

/// The response to send for a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub status: StatusCode,
    pub validators: Validators,
    pub body: Body,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body: 304, 412, 416.
    Empty,
    /// 200: the whole file.
    Whole { length: u64 },
    /// 206: one range of a file of `total` bytes.
    Single { range: ByteRange, total: u64 },
    /// 206 `multipart/byteranges`.
    Multi {
        ranges: Vec<ByteRange>,
        total: u64,
        boundary: String,
    },
}

/// Decides status and body for a file of `meta` given the request's method and headers.
pub fn plan(method: &Method, headers: &HeaderMap, meta: &Metadata) -> FilePlan {
    let validators = Validators::of(meta);
    let total = meta.len();
    let (status, body) = match evaluate(method, headers, &validators) {
        Precondition::NotModified => (StatusCode::NOT_MODIFIED, Body::Empty),
        Precondition::Failed => (StatusCode::PRECONDITION_FAILED, Body::Empty),
        Precondition::Proceed => match requested_ranges(method, headers, &validators, total) {
            Ranges::Full => (StatusCode::OK, Body::Whole { length: total }),
            Ranges::Unsatisfiable => (StatusCode::RANGE_NOT_SATISFIABLE, Body::Empty),
            Ranges::Partial(mut ranges) if ranges.len() == 1 => {
                let range = ranges.remove(0);
                (StatusCode::PARTIAL_CONTENT, Body::Single { range, total })
            }
            Ranges::Partial(ranges) => (
                StatusCode::PARTIAL_CONTENT,
                Body::Multi {
                    ranges,
                    total,
                    boundary: boundary(),
                },
            ),
        },
    };
    FilePlan {
        status,
        validators,
        body,
    }
}

/// The Range header, if it applies: GET only (RFC 9110 §14.2), and If-Range must match.
fn requested_ranges(method: &Method, headers: &HeaderMap, v: &Validators, total: u64) -> Ranges {
    let text = |name| {
        headers
            .get(name)
            .and_then(|h: &http::HeaderValue| h.to_str().ok())
    };
    let Some(range) = text(http::header::RANGE) else {
        return Ranges::Full;
    };
    if method != Method::GET {
        return Ranges::Full;
    }
    if let Some(condition) = text(http::header::IF_RANGE) {
        let condition = condition.trim();
        // An entity-tag must match strongly (a weak one never does); a date must be exactly the
        // Last-Modified we would send.
        let matches = if condition.starts_with('"') || condition.starts_with("W/") {
            condition == v.etag
        } else {
            condition == v.last_modified
        };
        if !matches {
            return Ranges::Full;
        }
    }
    range::parse(range, total, MAX_RANGES)
}

/// A multipart boundary that will not occur in the file by accident.
fn boundary() -> String {
    use std::hash::{BuildHasher, Hasher};
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("spillway-{random:016x}")
}

/// The header block that opens one part of a `multipart/byteranges` body.
pub fn part_header(boundary: &str, content_type: &str, range: ByteRange, total: u64) -> String {
    format!(
        "\r\n--{boundary}\r\nContent-Type: {content_type}\r\nContent-Range: bytes {}-{}/{total}\r\n\r\n",
        range.start, range.end
    )
}

/// The line that closes a `multipart/byteranges` body.
pub fn closing_boundary(boundary: &str) -> String {
    format!("\r\n--{boundary}--\r\n")
}

/// The exact length of a `multipart/byteranges` body, for `Content-Length`.
pub fn multipart_length(
    boundary: &str,
    content_type: &str,
    ranges: &[ByteRange],
    total: u64,
) -> u64 {
    let parts: u64 = ranges
        .iter()
        .map(|&r| part_header(boundary, content_type, r, total).len() as u64 + r.length())
        .sum();
    parts + closing_boundary(boundary).len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request headers for a table case.
    type Headers<'a> = Vec<(&'static str, &'a str)>;

    fn meta_of(bytes: &[u8]) -> (tempfile::TempDir, Metadata) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f"), bytes).unwrap();
        let meta = std::fs::metadata(dir.path().join("f")).unwrap();
        (dir, meta)
    }

    fn plan_with(method: Method, headers: &[(&'static str, &str)], meta: &Metadata) -> FilePlan {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().unwrap());
        }
        plan(&method, &map, meta)
    }

    #[test]
    fn ranges_apply_to_get_only_and_after_preconditions() {
        let (_dir, meta) = meta_of(&[7u8; 100]);
        let v = Validators::of(&meta);
        let weak = format!("W/{}", v.etag);
        let single = Body::Single {
            range: ByteRange { start: 0, end: 9 },
            total: 100,
        };
        let cases: Vec<(Method, Headers, u16, &str)> = vec![
            (
                Method::GET,
                vec![("range", "bytes=0-9")],
                206,
                "plain range",
            ),
            (
                Method::HEAD,
                vec![("range", "bytes=0-9")],
                200,
                "HEAD ignores Range",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-9"), ("if-range", &v.etag)],
                206,
                "If-Range strong match",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-9"), ("if-range", &weak)],
                200,
                "weak If-Range never matches",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-9"), ("if-range", "\"other\"")],
                200,
                "other etag",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-9"), ("if-range", &v.last_modified)],
                206,
                "exact date",
            ),
            (
                Method::GET,
                vec![
                    ("range", "bytes=0-9"),
                    ("if-range", "Mon, 01 Jan 2001 00:00:00 GMT"),
                ],
                200,
                "other date",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-9"), ("if-none-match", &v.etag)],
                304,
                "304 first",
            ),
            (
                Method::GET,
                vec![("range", "bytes=200-")],
                416,
                "unsatisfiable",
            ),
            (
                Method::GET,
                vec![("range", "bytes=0-1,5-6")],
                206,
                "multipart",
            ),
            (
                Method::GET,
                vec![("range", "bytes=x")],
                200,
                "malformed ignored",
            ),
        ];
        for (method, headers, status, why) in cases {
            let p = plan_with(method, &headers, &meta);
            assert_eq!(p.status.as_u16(), status, "{why}");
            if why == "plain range" {
                assert_eq!(p.body, single);
            }
        }
    }

    #[test]
    fn multipart_length_matches_what_is_written() {
        let ranges = [
            ByteRange { start: 0, end: 1 },
            ByteRange { start: 5, end: 9 },
        ];
        let mut written = 0;
        for &r in &ranges {
            written += part_header("b", "text/plain", r, 100).len() as u64 + r.length();
        }
        written += closing_boundary("b").len() as u64;
        assert_eq!(multipart_length("b", "text/plain", &ranges, 100), written);
        assert_eq!(
            part_header("b", "text/plain", ranges[1], 100),
            "\r\n--b\r\nContent-Type: text/plain\r\nContent-Range: bytes 5-9/100\r\n\r\n"
        );
    }
}
