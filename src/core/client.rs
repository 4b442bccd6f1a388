//! Which client a request is from, for per-client limits: the connection's peer, or, when the
//! peer is one of the `trusted_proxies:` (a CDN, a load balancer), the address those proxies
//! put in `X-Forwarded-For`. Only trusted hops are believed: the rightmost address that is not
//! a trusted proxy is the client, so a client cannot pick its own key by sending the field.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

/// The client behind `peer`, trusting `X-Forwarded-For` only as far as `trusted` proxies go.
pub fn client_ip(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address ends what can be believed: the last trusted one is
        // the client as far as anyone can tell.
        let Ok(ip) = hop.parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(xff: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in xff {
            headers.append("x-forwarded-for", http::HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn only_trusted_hops_are_believed() {
        let trusted: Vec<IpNet> = vec![
            "10.0.0.0/8".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let from = |peer: &str, xff: &[&'static str]| client_ip(ip(peer), &fields(xff), &trusted);
        // Straight from the client: its own field is ignored.
        assert_eq!(from("203.0.113.9", &["198.51.100.1"]), ip("203.0.113.9"));
        // Through the load balancer: what it appended.
        assert_eq!(from("10.1.2.3", &["198.51.100.1"]), ip("198.51.100.1"));
        // A forged entry before the real one does not help: the rightmost untrusted wins.
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6, 198.51.100.1, 192.0.2.7"]),
            ip("198.51.100.1")
        );
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6", "198.51.100.1"]),
            ip("198.51.100.1")
        );
        // Nothing forwarded, or garbage: the trusted peer itself.
        assert_eq!(from("10.1.2.3", &[]), ip("10.1.2.3"));
        assert_eq!(from("10.1.2.3", &["unknown"]), ip("10.1.2.3"));
        // Only trusted hops: the leftmost of them.
        assert_eq!(from("10.1.2.3", &["10.9.9.9"]), ip("10.9.9.9"));
    }
}
