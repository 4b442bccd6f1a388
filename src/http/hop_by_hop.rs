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

/// The connection-specific fields of one message: the standard ones, and those its
/// `Connection` header names.
pub struct HopByHop {
    named: Vec<HeaderName>,
}

impl HopByHop {
    pub fn of(headers: &HeaderMap) -> HopByHop {
        let named = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|token| HeaderName::from_bytes(token.trim().as_bytes()).ok())
            .collect();
        HopByHop { named }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn standard_fields_and_the_ones_connection_names_stay_on_the_hop() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, X-Secret"),
        );
        headers.append(header::CONNECTION, HeaderValue::from_static(" close,foo"));
        let hop = HopByHop::of(&headers);
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

    #[test]
    fn a_malformed_token_names_nothing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("a b, , cookie"),
        );
        let hop = HopByHop::of(&headers);
        assert!(hop.contains(&header::COOKIE));
        assert!(!hop.contains(&header::HOST));
    }
}
