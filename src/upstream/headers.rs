//! The fields spillway adds to what it sends upstream: `X-Forwarded-For` (the client, after what
//! earlier proxies said), `X-Forwarded-Proto` (from the listener the request came in on, never
//! from the client) and `X-Request-Id` (the access log's, so the two logs can be joined).

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue};
use pingora::http::RequestHeader;

/// `X-Forwarded-For` once `client` is appended to what earlier proxies said in `headers`
/// (every line of it, in order: a list may be split over several).
pub fn forwarded_for(headers: &HeaderMap, client: IpAddr) -> String {
    let mut value = String::new();
    for prior in headers.get_all("x-forwarded-for") {
        value.push_str(&String::from_utf8_lossy(prior.as_bytes()));
        value.push_str(", ");
    }
    value.push_str(&client.to_string());
    value
}

/// Whether spillway sets `name` itself: the client's own is replaced (`X-Forwarded-For` only
/// when the client's address is known, and then extended).
pub fn replaced(name: &HeaderName, client: Option<IpAddr>) -> bool {
    name == "x-forwarded-proto"
        || name == "x-request-id"
        || (client.is_some() && name == "x-forwarded-for")
}

/// Writes the three fields as HTTP/1 header lines, after the client's own fields (`headers`)
/// less the `replaced` ones.
pub fn write_forwarding(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    client: Option<IpAddr>,
    tls: bool,
    request_id: &str,
) {
    use std::io::Write as _;
    if let Some(client) = client {
        out.extend_from_slice(b"x-forwarded-for: ");
        for prior in headers.get_all("x-forwarded-for") {
            out.extend_from_slice(prior.as_bytes());
            out.extend_from_slice(b", ");
        }
        let _ = write!(out, "{client}\r\n");
    }
    out.extend_from_slice(match tls {
        true => b"x-forwarded-proto: https\r\n",
        false => b"x-forwarded-proto: http\r\n",
    });
    out.extend_from_slice(b"x-request-id: ");
    out.extend_from_slice(request_id.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Sets the three fields on a request that already carries the client's own fields.
pub fn add_forwarding(
    request: &mut RequestHeader,
    client: Option<IpAddr>,
    tls: bool,
    request_id: &str,
) -> pingora::Result<()> {
    if let Some(client) = client {
        let forwarded = forwarded_for(&request.headers, client);
        request.insert_header("x-forwarded-for", forwarded)?;
    }
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    request.insert_header("x-forwarded-proto", proto)?;
    request.insert_header("x-request-id", request_id)?;
    Ok(())
}
