//! Header fields that describe one connection rather than the message (RFC 9110 §7.6.1): a
//! proxy consumes them and never passes them on, in either direction.

use http::header::{self, HeaderMap, HeaderName};

/// The fields that are always hop-by-hop. `Proxy-Authorization` and `Proxy-Authenticate` are
/// meant for spillway, not the upstream (Pingora's proxy drops them too); `HTTP2-Settings` only
/// means something on an upgrade.
const ALWAYS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "http2-settings",
];

/// Fields a client must not be able to strip by naming them in `Connection`: the upstream
/// relies on them (Pingora's proxy refuses such a request).
const PROTECTED: [&str; 4] = [
    "host",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
];

/// A request's `Connection` may name this many fields (as in Pingora's proxy, after Envoy).
const MOST_NAMED: usize = 9;

/// The connection-specific fields of one message: the standard ones, and those its
/// `Connection` header names.
pub struct HopByHop {
    named: Vec<HeaderName>,
}

impl HopByHop {
    /// For an answer: a token that is not a field name names nothing.
    pub fn of(headers: &HeaderMap) -> HopByHop {
        // Only the `Connection` values: a map finds them without a look at the other fields.
        let named = tokens(headers)
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .collect();
        HopByHop { named }
    }

    /// The same, for fields as they came off the wire (names in any case).
    pub fn of_fields<'f>(fields: impl Iterator<Item = (&'f [u8], &'f [u8])>) -> HopByHop {
        let named = fields
            .filter(|(name, _)| name.eq_ignore_ascii_case(b"connection"))
            .flat_map(|(_, value)| value.split(|&b| b == b','))
            .map(<[u8]>::trim_ascii)
            .filter_map(|token| HeaderName::from_bytes(token).ok())
            .collect();
        HopByHop { named }
    }

    /// For a request, strictly: `None` when its `Connection` names a protected field, a token
    /// that is not one (RFC 9110 §5.6.2), or too many (such a request is not ours to mend).
    pub fn of_request(headers: &HeaderMap) -> Option<HopByHop> {
        let mut named = Vec::new();
        for token in tokens(headers) {
            if named.len() == MOST_NAMED || !token.iter().all(|&b| is_tchar(b)) {
                return None;
            }
            let name = HeaderName::from_bytes(token).ok()?;
            if PROTECTED.contains(&name.as_str()) {
                return None;
            }
            named.push(name);
        }
        Some(HopByHop { named })
    }

    /// Whether `name` stays on this hop.
    pub fn contains(&self, name: &HeaderName) -> bool {
        ALWAYS.contains(&name.as_str()) || self.named.contains(name)
    }

    /// The same, for a name spelled in any case (as it came off the wire).
    pub fn contains_spelled(&self, name: &[u8]) -> bool {
        let is = |known: &str| known.as_bytes().eq_ignore_ascii_case(name);
        ALWAYS.iter().any(|known| is(known)) || self.named.iter().any(|n| is(n.as_str()))
    }
}

/// The non-empty, comma-separated tokens of every `Connection` field.
fn tokens(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|token| !token.is_empty())
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn connection(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(header::CONNECTION, HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn standard_fields_and_the_ones_connection_names_stay_on_the_hop() {
        let headers = connection(&["keep-alive, X-Secret", " close,foo"]);
        for hop in [
            HopByHop::of(&headers),
            HopByHop::of_request(&headers).expect("plain"),
        ] {
            for name in [
                "connection",
                "keep-alive",
                "transfer-encoding",
                "te",
                "upgrade",
                "proxy-authorization",
                "x-secret",
                "foo",
            ] {
                assert!(hop.contains(&HeaderName::from_static(name)), "{name}");
            }
            for name in [
                "host",
                "cookie",
                "content-length",
                "x-forwarded-for",
                "date",
            ] {
                assert!(!hop.contains(&HeaderName::from_static(name)), "{name}");
                assert!(!hop.contains_spelled(name.as_bytes()), "{name}");
            }
            for spelled in ["Connection", "KEEP-ALIVE", "Transfer-Encoding", "X-Secret"] {
                assert!(hop.contains_spelled(spelled.as_bytes()), "{spelled}");
            }
        }
    }

    #[test]
    fn an_answer_s_malformed_token_names_nothing() {
        let hop = HopByHop::of(&connection(&["a b, , cookie"]));
        assert!(hop.contains(&header::COOKIE));
        assert!(!hop.contains(&header::HOST));
    }

    #[test]
    fn a_request_may_not_strip_protected_fields_or_name_too_many() {
        for refused in [
            &["Host"][..],
            &["keep-alive, X-Forwarded-For"],
            &["x-forwarded-proto"],
            &["\"x-forwarded-for\""],
            &["a b"],
            &["a, b, c, d, e, f, g, h, i, j"],
        ] {
            assert!(
                HopByHop::of_request(&connection(refused)).is_none(),
                "{refused:?}"
            );
        }
        assert!(HopByHop::of_request(&connection(&["a, b, c, d, e, f, g, h, i"])).is_some());
        assert!(HopByHop::of_request(&HeaderMap::new()).is_some());
    }
}
