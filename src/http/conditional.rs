//! Validators and conditional requests (RFC 9110 §8.8, §13): `ETag`, `Last-Modified`, and
//! what `If-Match`, `If-None-Match`, `If-Modified-Since` and `If-Unmodified-Since` make of them.

use std::fs::Metadata;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, Method};

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
