//! What a local file's response is: validators, conditional requests (RFC 9110 §13) and ranges
//! (§14).
//!
//! Pure: it looks at metadata and request headers and returns a `FilePlan`; `respond` writes it.

use std::borrow::Cow;
use std::fs::Metadata;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method};

use crate::range::{self, ByteRange, Ranges};

/// A file's validators, as sent in `ETag` and `Last-Modified`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validators {
    /// Strong, from the file's identity (modification time and size), as nginx does: it changes
    /// whenever the content plausibly does, and needs no read of the content.
    pub etag: String,
    pub last_modified: String,
    /// Modification time truncated to whole seconds, the resolution of HTTP dates.
    modified: SystemTime,
}

impl Validators {
    pub fn of(meta: &Metadata) -> Validators {
        let mtime = meta.modified().unwrap_or(UNIX_EPOCH);
        let since_epoch = mtime.duration_since(UNIX_EPOCH).unwrap_or_default();
        let modified = UNIX_EPOCH + Duration::from_secs(since_epoch.as_secs());
        Validators {
            etag: format!(
                "\"{:x}.{:x}-{:x}\"",
                since_epoch.as_secs(),
                since_epoch.subsec_nanos(),
                meta.len()
            ),
            last_modified: httpdate::fmt_http_date(modified),
            modified,
        }
    }
}

/// At most this many ranges in one request, satisfiable or not; more get the whole file (like
/// nginx's `max_ranges`, which counts only satisfiable ones).
pub const MAX_RANGES: usize = 16;

/// The response to send for a local file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePlan {
    pub status: u16,
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
        Precondition::NotModified => (304, Body::Empty),
        Precondition::Failed => (412, Body::Empty),
        Precondition::Proceed => match requested_ranges(method, headers, &validators, total) {
            Ranges::Full => (200, Body::Whole { length: total }),
            Ranges::Unsatisfiable => (416, Body::Empty),
            Ranges::Partial(mut ranges) if ranges.len() == 1 => {
                let range = ranges.remove(0);
                (206, Body::Single { range, total })
            }
            Ranges::Partial(ranges) => (
                206,
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

/// `Content-Type` by extension; text types declare UTF-8 so browsers need not sniff. The
/// common text types are static strings; others are built once per response.
pub fn content_type(relative_path: &str) -> Cow<'static, str> {
    let Some(mime) = mime_guess::from_path(relative_path).first_raw() else {
        return Cow::Borrowed("application/octet-stream");
    };
    let with_charset = match mime {
        "text/html" => "text/html; charset=utf-8",
        "text/css" => "text/css; charset=utf-8",
        "text/javascript" => "text/javascript; charset=utf-8",
        "text/plain" => "text/plain; charset=utf-8",
        "text/csv" => "text/csv; charset=utf-8",
        "text/xml" => "text/xml; charset=utf-8",
        "application/json" => "application/json; charset=utf-8",
        "application/javascript" => "application/javascript; charset=utf-8",
        "image/svg+xml" => "image/svg+xml; charset=utf-8",
        other if other.starts_with("text/") => {
            return Cow::Owned(format!("{other}; charset=utf-8"))
        }
        other => other,
    };
    Cow::Borrowed(with_charset)
}

/// The result of evaluating the request's preconditions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Send the representation.
    Proceed,
    /// `304 Not Modified`.
    NotModified,
    /// `412 Precondition Failed`.
    Failed,
}

/// Evaluates preconditions in the order of RFC 9110 §13.2.2.
pub fn evaluate(method: &Method, headers: &HeaderMap, v: &Validators) -> Precondition {
    let date = |name| {
        headers
            .get(name)
            .and_then(|h: &http::HeaderValue| h.to_str().ok())
            .and_then(|t| httpdate::parse_http_date(t).ok())
    };
    // If-Match and If-None-Match are lists; several header lines are one list (RFC 9110 §5.3).
    let list = |name| {
        let mut lines = headers.get_all(name).iter().peekable();
        lines.peek()?;
        Some(lines.filter_map(|h| h.to_str().ok()).collect::<Vec<_>>())
    };

    if let Some(lines) = list(http::header::IF_MATCH) {
        if !lines
            .iter()
            .any(|l| etag_list_matches(l, &v.etag, Comparison::Strong))
        {
            return Precondition::Failed;
        }
    } else if let Some(since) = date(http::header::IF_UNMODIFIED_SINCE) {
        if v.modified > since {
            return Precondition::Failed;
        }
    }
    let safe = method == Method::GET || method == Method::HEAD;
    if let Some(lines) = list(http::header::IF_NONE_MATCH) {
        if lines
            .iter()
            .any(|l| etag_list_matches(l, &v.etag, Comparison::Weak))
        {
            return if safe {
                Precondition::NotModified
            } else {
                Precondition::Failed
            };
        }
    } else if safe {
        if let Some(since) = date(http::header::IF_MODIFIED_SINCE) {
            if v.modified <= since {
                return Precondition::NotModified;
            }
        }
    }
    Precondition::Proceed
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Comparison {
    Strong,
    Weak,
}

/// Whether `*` or any entity-tag in a comma-separated list matches ours (RFC 9110 §8.8.3.2).
fn etag_list_matches(list: &str, ours: &str, comparison: Comparison) -> bool {
    if list.trim() == "*" {
        return true;
    }
    list.split(',').map(str::trim).any(|tag| {
        let (weak, opaque) = match tag.strip_prefix("W/") {
            Some(rest) => (true, rest),
            None => (false, tag),
        };
        // Our own tag is always strong, so a weak tag can only match weakly.
        opaque == ours && (comparison == Comparison::Weak || !weak)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Request headers for a table case.
    type Headers<'a> = Vec<(&'static str, &'a str)>;

    fn validators() -> Validators {
        Validators {
            etag: "\"5f5e100.0-400\"".into(),
            last_modified: httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(100_000_000)),
            modified: UNIX_EPOCH + Duration::from_secs(100_000_000),
        }
    }

    fn eval(method: Method, headers: &[(&'static str, &str)]) -> Precondition {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(*name, value.parse().unwrap());
        }
        evaluate(&method, &map, &validators())
    }

    #[test]
    fn preconditions_follow_rfc_order() {
        let v = validators();
        let tag = v.etag.as_str();
        let weak = format!("W/{tag}");
        let tag_in_list = format!("\"x\" , {tag}");
        let lm = v.last_modified.as_str();
        let earlier = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(99_999_999));
        let later = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(100_000_001));
        use Precondition::*;
        type Case<'a> = (
            Method,
            Vec<(&'static str, &'a str)>,
            Precondition,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            (Method::GET, vec![], Proceed, "no conditions"),
            (
                Method::GET,
                vec![("if-none-match", tag)],
                NotModified,
                "exact tag",
            ),
            (
                Method::GET,
                vec![("if-none-match", &weak)],
                NotModified,
                "weak comparison for INM",
            ),
            (
                Method::GET,
                vec![("if-none-match", "\"x\", \"y\"")],
                Proceed,
                "list without ours",
            ),
            (
                Method::GET,
                vec![("if-none-match", &tag_in_list)],
                NotModified,
                "list with ours",
            ),
            (
                Method::GET,
                vec![("if-none-match", "*")],
                NotModified,
                "star",
            ),
            (
                Method::HEAD,
                vec![("if-none-match", tag)],
                NotModified,
                "HEAD like GET",
            ),
            (
                Method::GET,
                vec![("if-modified-since", lm)],
                NotModified,
                "same date",
            ),
            (
                Method::GET,
                vec![("if-modified-since", &later)],
                NotModified,
                "later date",
            ),
            (
                Method::GET,
                vec![("if-modified-since", &earlier)],
                Proceed,
                "earlier date",
            ),
            (
                Method::GET,
                vec![("if-modified-since", "yesterday")],
                Proceed,
                "invalid date ignored",
            ),
            (
                Method::GET,
                vec![("if-none-match", "\"x\""), ("if-modified-since", lm)],
                Proceed,
                "INM wins over IMS",
            ),
            (
                Method::GET,
                vec![("if-match", tag)],
                Proceed,
                "if-match strong",
            ),
            (
                Method::GET,
                vec![("if-match", &weak)],
                Failed,
                "if-match never weak",
            ),
            (
                Method::GET,
                vec![("if-match", "\"x\"")],
                Failed,
                "if-match other",
            ),
            (
                Method::GET,
                vec![("if-match", "*")],
                Proceed,
                "if-match star",
            ),
            (
                Method::GET,
                vec![("if-unmodified-since", &earlier)],
                Failed,
                "modified since",
            ),
            (
                Method::GET,
                vec![("if-unmodified-since", lm)],
                Proceed,
                "not modified since",
            ),
            (
                Method::GET,
                vec![("if-match", tag), ("if-unmodified-since", &earlier)],
                Proceed,
                "IM present: IUS ignored",
            ),
            (
                Method::GET,
                vec![("if-match", "\"x\""), ("if-none-match", tag)],
                Failed,
                "412 before 304",
            ),
            (
                Method::GET,
                vec![("if-none-match", "\"x\""), ("if-none-match", tag)],
                NotModified,
                "two If-None-Match lines are one list",
            ),
            (
                Method::GET,
                vec![("if-match", "\"x\""), ("if-match", tag)],
                Proceed,
                "two If-Match lines are one list",
            ),
        ];
        for (method, headers, want, why) in cases {
            assert_eq!(eval(method, &headers), want, "{why}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        let cases = [
            ("a.html", "text/html; charset=utf-8"),
            ("dir/a.css", "text/css; charset=utf-8"),
            ("a.JPG", "image/jpeg"),
            ("a.png", "image/png"),
            ("a.js", "text/javascript; charset=utf-8"),
            ("a.json", "application/json; charset=utf-8"),
            ("noextension", "application/octet-stream"),
            ("a.unknownext", "application/octet-stream"),
        ];
        for (path, want) in cases {
            assert_eq!(content_type(path), want, "{path}");
        }
    }

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
            assert_eq!(p.status, status, "{why}");
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

    #[test]
    fn etag_changes_with_size_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "one").unwrap();
        let a = Validators::of(&std::fs::metadata(&path).unwrap());
        std::fs::write(&path, "three").unwrap();
        let b = Validators::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(a.etag, b.etag, "size is part of the tag");
        assert!(
            a.etag.starts_with('"') && a.etag.ends_with('"'),
            "quoted strong tag"
        );
    }
}
