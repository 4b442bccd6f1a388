//! Asking the legacy application whether a request may have what spillway decided to give it:
//! the check's settings, what the application is told, and how its answers are kept (which
//! answers wait for a check is `Answer::check`).
//! The exchange itself is `upstream::authorize`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use sha2::{Digest, Sha256};

use crate::core::upstream::Upstream;
use crate::http::percent::encode_path;

/// `authorize:` on a route.
#[derive(Debug, Clone)]
pub struct Authorize {
    pub upstream: Arc<Upstream>,
    /// The endpoint's path, fixed in the configuration.
    pub path: String,
    /// Request headers passed to the endpoint; nothing else of the client's is.
    pub forward: Vec<HeaderName>,
    pub timeout: Duration,
    /// How long an answer is kept; zero asks every time.
    pub cache: Duration,
    pub applies_to: AppliesTo,
}

/// Which answers need the application's yes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppliesTo {
    /// Presigned redirects only: what `private` means once a check is configured.
    Private,
    /// Also local files and public objects.
    All,
}

/// The headers spillway sets on the check itself. A client's own are never passed on: a
/// forged `X-Original-URI` must not pick the path the application judges.
pub const SET_BY_SPILLWAY: [&str; 3] = ["x-original-uri", "x-original-method", "x-forwarded-for"];

impl Authorize {
    /// Where an answer for this request is kept: the route, the canonical path, and the
    /// forwarded headers' values, hashed (cookies are never kept as they are).
    pub fn cache_key(&self, route_id: usize, original_uri: &str, headers: &HeaderMap) -> [u8; 32] {
        let mut hash = Sha256::new();
        hash.update(route_id.to_le_bytes());
        hash.update(original_uri.as_bytes());
        for name in &self.forward {
            for value in headers.get_all(name) {
                // Lengths keep `a: bc` and `ab: c` apart.
                hash.update((name.as_str().len() as u64).to_le_bytes());
                hash.update(name.as_str().as_bytes());
                hash.update((value.len() as u64).to_le_bytes());
                hash.update(value.as_bytes());
            }
        }
        hash.finalize().into()
    }
}

/// The request path as spillway routed it and would sign it: the route's prefix and the
/// canonical relative path, percent-encoded once in one way. However the client spelled the
/// path (`%61` for `a`, `%2e` escapes aside, which are refused), the application is asked
/// about this one, so it cannot judge a different path than the one served.
pub fn original_uri(prefix: &str, relative: &str) -> String {
    let mut uri = String::with_capacity(prefix.len() + 1 + 3 * relative.len());
    uri.push_str(prefix);
    uri.push('/');
    uri.extend(encode_path(relative));
    uri
}

/// What the application answered, as spillway acts on it.
#[derive(Debug, Clone)]
pub enum Verdict {
    /// A 2xx: the request proceeds.
    Allow,
    /// A 401 or 403 (its status, body and `WWW-Authenticate`), or a 3xx (a login page): sent
    /// to the client as the application gave it.
    Deny(Arc<Denial>),
}

/// The application's "no", relayed to the client.
#[derive(Debug)]
pub struct Denial {
    pub status: StatusCode,
    /// End-to-end headers only; the length is the body's.
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// What a status of the endpoint's says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Said {
    Yes,
    No,
    /// Neither (a 404, a 500, a 429...): the request fails closed, with a 503.
    Neither,
}

pub fn said(status: StatusCode) -> Said {
    if status.is_success() {
        Said::Yes
    } else if status.is_redirection()
        || status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
    {
        Said::No
    } else {
        Said::Neither
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_uri_is_the_canonical_path_encoded_once() {
        let cases = [
            ("/uploads", "a.pdf", "/uploads/a.pdf"),
            ("/uploads", "résumé.pdf", "/uploads/r%C3%A9sum%C3%A9.pdf"),
            ("/uploads", "a b+c.pdf", "/uploads/a%20b%2Bc.pdf"),
            ("/uploads", "dir/x.png", "/uploads/dir/x.png"),
            ("", "x.png", "/x.png"),
        ];
        for (prefix, relative, want) in cases {
            assert_eq!(original_uri(prefix, relative), want, "{relative}");
        }
    }

    fn check(forward: &[&'static str]) -> Authorize {
        Authorize {
            upstream: Arc::new(Upstream {
                name: "legacy".into(),
                address: "127.0.0.1:1".parse().unwrap(),
                connect_timeout: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                write_timeout: Duration::from_secs(1),
                idle_timeout: Duration::from_secs(1),
            }),
            path: "/auth".into(),
            forward: forward.iter().map(|n| HeaderName::from_static(n)).collect(),
            timeout: Duration::from_secs(2),
            cache: Duration::from_secs(30),
            applies_to: AppliesTo::Private,
        }
    }

    #[test]
    fn the_cache_key_is_the_forwarded_values_and_the_path() {
        let check = check(&["cookie", "authorization"]);
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.append(*name, value.parse().unwrap());
            }
            map
        };
        let alice = headers(&[("cookie", "sid=alice"), ("user-agent", "a")]);
        let key = |h: &HeaderMap, uri: &str| check.cache_key(1, uri, h);
        let base = key(&alice, "/uploads/a.pdf");
        assert_eq!(
            base,
            key(
                &headers(&[("cookie", "sid=alice"), ("user-agent", "b")]),
                "/uploads/a.pdf"
            ),
            "headers not forwarded do not count"
        );
        assert_ne!(
            base,
            key(&headers(&[("cookie", "sid=bob")]), "/uploads/a.pdf")
        );
        assert_ne!(base, key(&alice, "/uploads/b.pdf"));
        assert_ne!(
            base,
            check.cache_key(2, "/uploads/a.pdf", &alice),
            "another route"
        );
        assert_ne!(
            base,
            key(
                &headers(&[("cookie", "sid=alice"), ("authorization", "Basic x")]),
                "/uploads/a.pdf"
            )
        );
    }

    #[test]
    fn a_2xx_is_yes_a_3xx_401_or_403_no_and_anything_else_neither() {
        let cases = [
            (200, Said::Yes),
            (204, Said::Yes),
            (302, Said::No),
            (303, Said::No),
            (401, Said::No),
            (403, Said::No),
            (404, Said::Neither),
            (429, Said::Neither),
            (500, Said::Neither),
            (502, Said::Neither),
        ];
        for (status, want) in cases {
            assert_eq!(
                said(StatusCode::from_u16(status).unwrap()),
                want,
                "{status}"
            );
        }
    }
}
