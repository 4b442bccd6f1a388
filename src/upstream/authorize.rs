//! The authorization subrequest: `GET` the route's endpoint on the legacy application, with
//! Pingora's HTTP/1 client and connection pool, and keep its answers for `cache`.
//!
//! Fail closed: anything but a 2xx, a 3xx, a 401 or a 403, a timeout, or an unreachable
//! application is a 503 (never a presigned link, never a file), with a log line.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, StatusCode};
use pingora::connectors::http::v1::Connector;
use pingora::http::RequestHeader;
use pingora::prelude::HttpPeer;
use pingora::protocols::http::v1::client::HttpSession;

use crate::core::answer::{Answer, Reject};
use crate::core::authorize::{original_uri, said, Authorize, Denial, Said, Verdict};
use crate::core::decide::Request;
use crate::core::site::Route;
use crate::http::hop_by_hop::HopByHop;
use crate::upstream::headers::forwarded_for;
use crate::upstream::proxy::peer;

/// The most of a "no" page relayed to the client; a longer one fails closed.
const LARGEST_DENIAL: usize = 64 * 1024;

/// How many answers are kept, over all routes.
const KEPT: usize = 10_000;

pub struct Authorizer {
    connector: Connector,
    /// Answers by `Authorize::cache_key`, with when they were given.
    kept: quick_cache::sync::Cache<[u8; 32], (Verdict, Instant)>,
}

/// Who is asking, as the endpoint is told.
pub struct Asker<'a> {
    pub request: &'a Request<'a>,
    pub client: Option<IpAddr>,
}

impl Authorizer {
    pub fn new() -> Authorizer {
        Authorizer {
            connector: Connector::new(None),
            kept: quick_cache::sync::Cache::new(KEPT),
        }
    }

    /// `answer`, if the route's check does not apply to it or said yes; the application's
    /// "no", or a 503, otherwise.
    pub async fn authorized<'c>(
        &self,
        route: Option<&'c Route>,
        relative: Option<&str>,
        asker: &Asker<'_>,
        answer: Answer<'c>,
    ) -> Answer<'c> {
        let (Some(route), Some(relative)) = (route, relative) else {
            return answer;
        };
        let Some(check) = answer.check(route) else {
            return answer;
        };
        let uri = original_uri(&route.prefix, relative);
        match self.verdict(route, check, &uri, asker).await {
            Ok(Verdict::Allow) => answer,
            Ok(Verdict::Deny(denial)) => Answer::Denied(denial),
            // Logged once, with the request, as every 5xx is.
            Err(e) => Answer::Reject(Reject::CheckFailed(e)),
        }
    }

    /// The kept answer for this request, or a fresh one.
    async fn verdict(
        &self,
        route: &Route,
        check: &Authorize,
        uri: &str,
        asker: &Asker<'_>,
    ) -> Result<Verdict, String> {
        let key =
            (!check.cache.is_zero()).then(|| check.cache_key(route.id, uri, asker.request.headers));
        if let Some((verdict, at)) = key.and_then(|k| self.kept.get(&k)) {
            if at.elapsed() < check.cache {
                return Ok(verdict);
            }
        }
        let asked_at = Instant::now();
        let verdict = tokio::time::timeout(check.timeout, self.ask(check, uri, asker))
            .await
            .map_err(|_| format!("no answer within {:?}", check.timeout))??;
        if let Some(key) = key {
            // A "no" is kept exactly as long as a "yes", from before the question.
            self.kept.insert(key, (verdict.clone(), asked_at));
        }
        Ok(verdict)
    }

    /// One exchange with the endpoint; a pooled connection the application had closed is
    /// retried once on a new one.
    async fn ask(
        &self,
        check: &Authorize,
        uri: &str,
        asker: &Asker<'_>,
    ) -> Result<Verdict, String> {
        let peer = peer(&check.upstream);
        let (session, reused) = self
            .connector
            .get_http_session(&peer)
            .await
            .map_err(|e| format!("cannot connect to upstream {}: {e}", check.upstream.name))?;
        match self.exchange(session, &peer, check, uri, asker).await {
            Err(_) if reused => {
                let (session, _) = self.connector.get_http_session(&peer).await.map_err(|e| {
                    format!("cannot connect to upstream {}: {e}", check.upstream.name)
                })?;
                self.exchange(session, &peer, check, uri, asker).await
            }
            done => done,
        }
    }

    async fn exchange(
        &self,
        mut session: HttpSession,
        peer: &HttpPeer,
        check: &Authorize,
        uri: &str,
        asker: &Asker<'_>,
    ) -> Result<Verdict, String> {
        let name = &check.upstream.name;
        let request =
            subrequest(check, uri, asker).map_err(|e| format!("building the check: {e}"))?;
        session
            .write_request_header(Box::new(request))
            .await
            .map_err(|e| format!("sending the check to upstream {name}: {e}"))?;
        let status = loop {
            session
                .read_response()
                .await
                .map_err(|e| format!("reading upstream {name}'s answer: {e}"))?;
            match session.get_status() {
                Some(status) if status.is_informational() => continue,
                Some(status) => break status,
                None => return Err(format!("upstream {name} sent no status")),
            }
        };
        let verdict = match said(status) {
            Said::Yes => {
                drain(&mut session, name).await?;
                Verdict::Allow
            }
            Said::No => Verdict::Deny(Arc::new(denial(&mut session, status, name).await?)),
            Said::Neither => {
                return Err(format!(
                    "{} {} answered {status}, neither yes (2xx) nor no (401, 403, 3xx)",
                    name, check.path
                ))
            }
        };
        self.connector
            .release_http_session(session, peer, Some(check.upstream.idle_timeout))
            .await;
        Ok(verdict)
    }
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer::new()
    }
}

/// The check: `GET path` with the forwarded headers and what spillway says about the request.
fn subrequest(check: &Authorize, uri: &str, asker: &Asker<'_>) -> pingora::Result<RequestHeader> {
    let headers = asker.request.headers;
    let mut request = RequestHeader::build("GET", check.path.as_bytes(), None)?;
    // The application may serve several sites: the Host the client asked for.
    let host = match headers.get(http::header::HOST) {
        Some(host) => host.as_bytes().to_vec(),
        None => check.upstream.address.to_string().into_bytes(),
    };
    request.insert_header(http::header::HOST, host)?;
    for name in &check.forward {
        for value in headers.get_all(name) {
            request.append_header(name.clone(), value.clone())?;
        }
    }
    request.insert_header("x-original-uri", uri)?;
    request.insert_header("x-original-method", asker.request.method.as_str())?;
    if let Some(client) = asker.client {
        let forwarded = forwarded_for(headers, client);
        request.insert_header("x-forwarded-for", forwarded)?;
    }
    Ok(request)
}

/// Reads what is left of a "yes" (its body is not used) so the connection can be reused.
async fn drain(session: &mut HttpSession, name: &str) -> Result<(), String> {
    let mut read = 0;
    while let Some(chunk) = session
        .read_body_ref()
        .await
        .map_err(|e| format!("reading upstream {name}'s answer: {e}"))?
    {
        read += chunk.len();
        if read > LARGEST_DENIAL {
            // Not worth reading: the connection is not reused.
            break;
        }
    }
    Ok(())
}

/// A "no" as the client gets it: the status, the end-to-end headers, and the body.
async fn denial(
    session: &mut HttpSession,
    status: StatusCode,
    name: &str,
) -> Result<Denial, String> {
    let mut headers = HeaderMap::new();
    if let Some(head) = session.resp_header() {
        // The length is the body's as relayed; the rest describes the endpoint's connection.
        let hop = HopByHop::of(&head.headers);
        for (header, value) in head.headers.iter() {
            if !hop.contains(header) && header != http::header::CONTENT_LENGTH {
                headers.append(header.clone(), value.clone());
            }
        }
    }
    // It depends on who asked: no shared cache may keep it for another client.
    if !headers.contains_key(http::header::CACHE_CONTROL) {
        headers.insert(
            http::header::CACHE_CONTROL,
            http::HeaderValue::from_static("private, no-store"),
        );
    }
    let mut body = Vec::new();
    while let Some(chunk) = session
        .read_body_ref()
        .await
        .map_err(|e| format!("reading upstream {name}'s answer: {e}"))?
    {
        if body.len() + chunk.len() > LARGEST_DENIAL {
            return Err(format!(
                "upstream {name}'s {status} page is over {LARGEST_DENIAL} bytes"
            ));
        }
        body.extend_from_slice(chunk);
    }
    Ok(Denial {
        status,
        headers,
        body,
    })
}
