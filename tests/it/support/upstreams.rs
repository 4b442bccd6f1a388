//! Upstreams: a legacy server that echoes the request, and an authorization endpoint.

use super::*;

/// A plain HTTP/1.1 upstream (keep-alive on). `/big/<n>` answers `n` bytes of `x`; every
/// other request gets 200,
/// `x-legacy: 1`, and a text/plain body:
///
/// ```text
/// method: GET
/// uri: /path?query            (as received)
/// header: host: 127.0.0.1:1234  (one line per header, lowercase name)
/// body-len: N
/// body: <body, lossy UTF-8>
/// ```
///
/// Header lines follow hyper's `HeaderMap` order: first-seen order of names,
/// with repeated names' values grouped together.
pub struct Legacy {
    pub port: u16,
    _server: BackgroundServer,
}

impl Legacy {
    pub fn start() -> Legacy {
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let service = hyper::service::service_fn(move |req| echo(req, port));
        let server = BackgroundServer::start("legacy", listener, service);
        Legacy {
            port,
            _server: server,
        }
    }
}

/// Echoes the request it got (method, URI, headers, body), saying which server answered in
/// `x-legacy-port`.
async fn echo(
    req: http::Request<hyper::body::Incoming>,
    port: u16,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, hyper::Error> {
    use http_body_util::BodyExt;
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    if let Some(size) = parts.uri.path().strip_prefix("/big/") {
        // A large body, for clients that stop reading.
        let size: usize = size.parse().unwrap_or(0);
        let resp = http::Response::builder()
            .status(200)
            .header("x-legacy", "1")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                size
            ])))
            .expect("big response");
        return Ok(resp);
    }
    let mut out = format!("method: {}\nuri: {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        out.push_str(&format!(
            "header: {}: {}\n",
            name,
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push_str(&format!(
        "body-len: {}\nbody: {}\n",
        body.len(),
        String::from_utf8_lossy(&body)
    ));
    let resp = http::Response::builder()
        .status(200)
        .header("x-legacy", "1")
        .header("x-legacy-port", port)
        .header("content-type", "text/plain; charset=utf-8")
        .body(http_body_util::Full::new(bytes::Bytes::from(out)))
        .expect("echo response");
    Ok(resp)
}

/// A legacy application's authorization endpoint (`/spillway/authorize`), deciding by the
/// `sid` cookie, and recording every check it is asked:
/// - `sid=alice`: 200, `sid=bob`: 403, no `sid`: 401 with `WWW-Authenticate`;
/// - `sid=guest`: 302 to `/login?next=<X-Original-URI>`; `sid=broken`: 500;
/// - `sid=slow`: 200 after 3 s.
pub struct AuthApp {
    pub port: u16,
    asked: Arc<Mutex<Vec<http::HeaderMap>>>,
    _server: BackgroundServer,
}

impl AuthApp {
    pub fn start() -> AuthApp {
        let listener = bind_any();
        let port = listener.local_addr().expect("local_addr").port();
        let asked = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&asked);
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let log = Arc::clone(&log);
                async move {
                    let headers = req.headers().clone();
                    log.lock().expect("asked").push(headers.clone());
                    let cookie = headers
                        .get("cookie")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let uri = headers
                        .get("x-original-uri")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    let answer = http::Response::builder();
                    let resp = match (req.uri().path(), cookie) {
                        ("/spillway/authorize", c) if c.contains("sid=alice") => {
                            answer.status(200).body(String::new())
                        }
                        ("/spillway/authorize", c) if c.contains("sid=bob") => answer
                            .status(403)
                            .header("content-type", "text/plain")
                            .body("bob may not\n".to_owned()),
                        ("/spillway/authorize", c) if c.contains("sid=guest") => answer
                            .status(302)
                            .header("location", format!("/login?next={uri}"))
                            .body(String::new()),
                        ("/spillway/authorize", c) if c.contains("sid=broken") => {
                            answer.status(500).body("oops\n".to_owned())
                        }
                        ("/spillway/authorize", c) if c.contains("sid=slow") => {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                            answer.status(200).body(String::new())
                        }
                        ("/spillway/authorize", _) => answer
                            .status(401)
                            .header("www-authenticate", "Cookie realm=\"site\"")
                            .header("content-type", "text/plain")
                            .body("log in first\n".to_owned()),
                        _ => answer.status(404).body(String::new()),
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("auth response"))
                }
            });
        let server = BackgroundServer::start("auth", listener, service);
        AuthApp {
            port,
            asked,
            _server: server,
        }
    }

    /// The checks asked so far, oldest first: each one's headers.
    pub fn asked(&self) -> Vec<http::HeaderMap> {
        self.asked.lock().expect("asked").clone()
    }
}

/// Reads one request head (request line and fields, without the blank line) for the
/// hand-written upstreams of the tests; `None` once the connection ends.
pub fn read_request_head(reader: &mut BufReader<TcpStream>) -> Option<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return None,
            Ok(_) if line == "\r\n" => return Some(head),
            Ok(_) => head.push_str(&line),
        }
    }
}
