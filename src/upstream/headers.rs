//! The fields spillway adds to what it sends upstream: `X-Forwarded-For` (the client, after what
//! earlier proxies said), `X-Forwarded-Proto` (from the listener the request came in on, never
//! from the client) and `X-Request-Id` (the access log's, so the two logs can be joined).

use std::net::IpAddr;

use http::HeaderValue;
use pingora::http::RequestHeader;

/// `X-Forwarded-For` once `client` is appended to the `prior` value, if any.
pub fn forwarded_for(prior: Option<&HeaderValue>, client: IpAddr) -> String {
    match prior {
        Some(prior) => format!("{}, {client}", String::from_utf8_lossy(prior.as_bytes())),
        None => client.to_string(),
    }
}

/// Sets the three fields on a request that already carries the client's own fields.
pub fn add_forwarding(
    request: &mut RequestHeader,
    client: Option<IpAddr>,
    tls: bool,
    request_id: &str,
) -> pingora::Result<()> {
    if let Some(client) = client {
        let forwarded = forwarded_for(request.headers.get("x-forwarded-for"), client);
        request.insert_header("x-forwarded-for", forwarded)?;
    }
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    request.insert_header("x-forwarded-proto", proto)?;
    request.insert_header("x-request-id", request_id)?;
    Ok(())
}
