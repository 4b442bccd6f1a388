//! Cross-origin reads of a route's files and redirects (the Fetch standard's CORS protocol):
//! which origins may read them, and the answer to a browser's preflight. Pure: the fields are
//! written by `wire::respond`.

use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

/// A route's `cors:` block, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cors {
    pub origins: Origins,
    /// What a preflight may ask for: GET and HEAD (what the route answers itself).
    pub methods: Vec<Method>,
    /// Request fields a preflight may name (lowercase), such as `range`.
    pub headers: Vec<HeaderName>,
    pub max_age: Duration,
}

/// Who may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origins {
    /// `"*"`: anyone (no credentials: browsers never send cookies with `*`).
    Any,
    /// These serialized origins (`https://app.example.com`), compared exactly.
    Listed(Vec<String>),
}

/// What the answer to a request from an allowed origin carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `Access-Control-Allow-Origin`: `*`, or the request's own origin.
    pub allow_origin: HeaderValue,
}

/// A preflight's answer (204): the grant, when the origin may read, and what it may ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preflight {
    pub grant: Option<Grant>,
    pub allow_methods: HeaderValue,
    pub allow_headers: Option<HeaderValue>,
    pub max_age: u64,
    /// Whether the answer depends on the request's `Origin` (a listed origin is echoed).
    pub varies: bool,
}

impl Cors {
    /// Whether answers depend on the request's `Origin` (listed origins are echoed back, so
    /// caches must keep one copy per origin: `Vary: Origin`).
    pub fn varies(&self) -> bool {
        matches!(self.origins, Origins::Listed(_))
    }

    /// The grant for a request with these fields: `None` without an `Origin`, or from one not
    /// allowed (the browser then keeps the answer from the page).
    pub fn grant(&self, headers: &HeaderMap) -> Option<Grant> {
        let origin = headers.get(http::header::ORIGIN)?;
        let allow_origin = match &self.origins {
            Origins::Any => HeaderValue::from_static("*"),
            Origins::Listed(listed) => {
                let origin_text = origin.to_str().ok()?;
                listed
                    .iter()
                    .any(|o| o == origin_text)
                    .then(|| origin.clone())?
            }
        };
        Some(Grant { allow_origin })
    }

    /// The answer to an `OPTIONS` request, when it is a preflight for a method this route
    /// answers itself; `None` when it is not one (the request goes on as any other `OPTIONS`,
    /// to the upstream: a preflight for an upload is the application's to answer).
    pub fn preflight(&self, method: &Method, headers: &HeaderMap) -> Option<Preflight> {
        if method != Method::OPTIONS || !headers.contains_key(http::header::ORIGIN) {
            return None;
        }
        let asked = headers.get(http::header::ACCESS_CONTROL_REQUEST_METHOD)?;
        if !self
            .methods
            .iter()
            .any(|m| m.as_str().as_bytes() == asked.as_bytes())
        {
            return None;
        }
        let join = |items: &mut dyn Iterator<Item = &str>| {
            HeaderValue::from_str(&items.collect::<Vec<_>>().join(", ")).ok()
        };
        Some(Preflight {
            grant: self.grant(headers),
            allow_methods: join(&mut self.methods.iter().map(Method::as_str))
                .unwrap_or(HeaderValue::from_static("GET, HEAD")),
            allow_headers: match self.headers.is_empty() {
                true => None,
                false => join(&mut self.headers.iter().map(HeaderName::as_str)),
            },
            max_age: self.max_age.as_secs(),
            varies: self.varies(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cors(origins: Origins) -> Cors {
        Cors {
            origins,
            methods: vec![Method::GET, Method::HEAD],
            headers: vec![HeaderName::from_static("range")],
            max_age: Duration::from_secs(600),
        }
    }

    fn fields(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn only_listed_origins_are_granted_and_echoed() {
        let listed = cors(Origins::Listed(vec!["https://app.example.com".into()]));
        let from = |origin| listed.grant(&fields(&[("origin", origin)]));
        assert_eq!(
            from("https://app.example.com").map(|g| g.allow_origin),
            Some(HeaderValue::from_static("https://app.example.com"))
        );
        for other in [
            "https://app.example.com.evil.test",
            "http://app.example.com",
            "https://APP.example.com",
            "null",
        ] {
            assert_eq!(from(other), None, "{other}");
        }
        assert_eq!(listed.grant(&HeaderMap::new()), None, "no Origin, no grant");
        assert!(listed.varies());
        let any = cors(Origins::Any);
        assert_eq!(
            any.grant(&fields(&[("origin", "https://x.test")]))
                .map(|g| g.allow_origin),
            Some(HeaderValue::from_static("*"))
        );
        assert!(!any.varies());
    }

    #[test]
    fn a_preflight_is_ours_only_for_the_methods_the_route_answers() {
        let listed = cors(Origins::Listed(vec!["https://app.example.com".into()]));
        let get = fields(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "range"),
        ]);
        let answer = listed.preflight(&Method::OPTIONS, &get).expect("ours");
        assert_eq!(answer.allow_methods, "GET, HEAD");
        assert_eq!(
            answer.allow_headers,
            Some(HeaderValue::from_static("range"))
        );
        assert_eq!((answer.max_age, answer.varies), (600, true));
        assert!(answer.grant.is_some());
        let post = fields(&[
            ("origin", "https://app.example.com"),
            ("access-control-request-method", "POST"),
        ]);
        assert_eq!(listed.preflight(&Method::OPTIONS, &post), None, "the app's");
        let plain = fields(&[("origin", "https://app.example.com")]);
        assert_eq!(
            listed.preflight(&Method::OPTIONS, &plain),
            None,
            "not a preflight"
        );
        assert_eq!(listed.preflight(&Method::GET, &get), None);
        let stranger = fields(&[
            ("origin", "https://evil.test"),
            ("access-control-request-method", "GET"),
        ]);
        let refused = listed.preflight(&Method::OPTIONS, &stranger).expect("ours");
        assert_eq!(refused.grant, None, "answered, but nothing granted");
    }
}
