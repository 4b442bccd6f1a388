//! A raw HTTP/1.1 client that sends the request target byte for byte as written.

use super::*;

/// A parsed HTTP response. Header names keep the case they had on the wire;
/// use [`Response::header`] for case-insensitive lookups.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// First value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_all(name).into_iter().next()
    }

    /// Every value of header `name` (case-insensitive), in wire order.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as (lossy) UTF-8, for assertions and failure messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection with `Connection: close`.
///
/// Sends `METHOD target HTTP/1.1` with `target` exactly as given. Adds
/// `Host: 127.0.0.1:port` unless `headers` has a Host, and `Content-Length`
/// when `body` is non-empty (unless `headers` sets Content-Length or
/// Transfer-Encoding). Panics on I/O errors or a malformed response.
pub fn request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Response {
    try_request(port, method, target, headers, body)
        .unwrap_or_else(|e| panic!("{method} {target} to 127.0.0.1:{port} failed: {e}"))
}

/// [`request`] that returns I/O errors instead of panicking, for tests that
/// expect the server to drop the connection.
pub fn try_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<Response> {
    let head = format_request(port, method, target, headers, body, true);
    exchange(
        port,
        &[head.as_slice(), body].concat(),
        method.eq_ignore_ascii_case("HEAD"),
    )
}

/// `GET target` with no extra headers.
pub fn get(port: u16, target: &str) -> Response {
    request(port, "GET", target, &[], b"")
}

/// Send completely hand-written bytes (request line, headers and all) and
/// read one response, for requests `request` cannot express (e.g. both
/// Content-Length and Transfer-Encoding). `head_request` suppresses the body
/// read as for HEAD.
pub fn send_raw(port: u16, raw: &[u8], head_request: bool) -> io::Result<Response> {
    exchange(port, raw, head_request)
}

/// Follow a redirect: request `location` (an absolute `http://` URL) with
/// `method`. Always connects to 127.0.0.1 at the URL's port (so virtual-host
/// names like `bucket.s3.localhost` work without DNS), sends the URL's
/// authority verbatim as Host, and sends path+query exactly as written.
pub fn follow(location: &str, method: &str) -> Response {
    follow_with(location, method, &[])
}

/// [`follow`] with extra request headers (e.g. Range).
pub fn follow_with(location: &str, method: &str, headers: &[(&str, &str)]) -> Response {
    let (authority, port, target) = split_url(location);
    let mut all = vec![("Host", authority)];
    all.extend_from_slice(headers);
    request(port, method, target, &all, b"")
}

/// Split `http://authority/target` into (authority, port, target). The
/// fragment is dropped because clients never send it.
pub(crate) fn split_url(url: &str) -> (&str, u16, &str) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("follow: not an absolute http:// URL: {url:?}"));
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    // "[::1]:8080" and "host:8080" both end in ":port"; no port means 80.
    let port = match authority.rsplit_once(':') {
        Some((_, p)) if !p.contains(']') => p
            .parse()
            .unwrap_or_else(|_| panic!("follow: bad port in {url:?}")),
        _ => 80,
    };
    let target = match target {
        "" => "/",
        t if t.starts_with('?') => panic!("follow: query without path in {url:?}"),
        t => t,
    };
    (authority, port, target)
}

/// A persistent (keep-alive) connection: requests are sent without
/// `Connection: close` and exactly one response is read per request, so a
/// test can check the connection is still usable afterwards (which needs the
/// server to frame every response, e.g. `Content-Length: 0` on a 302).
pub struct Conn {
    port: u16,
    reader: BufReader<TcpStream>,
}

impl Conn {
    pub fn open(port: u16) -> Conn {
        let stream = connect(port).unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
        Conn {
            port,
            reader: BufReader::new(stream),
        }
    }

    /// Send one request and read exactly one response. Panics on errors.
    pub fn send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        self.try_send(method, target, headers, body)
            .unwrap_or_else(|e| {
                panic!(
                    "keep-alive {method} {target} to 127.0.0.1:{} failed: {e}",
                    self.port
                )
            })
    }

    /// [`Conn::send`] returning errors, e.g. to assert the server closed the
    /// connection after a previous response.
    pub fn try_send(
        &mut self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        let head = format_request(self.port, method, target, headers, body, false);
        let stream = self.reader.get_mut();
        stream.write_all(&head)?;
        stream.write_all(body)?;
        read_response(&mut self.reader, method.eq_ignore_ascii_case("HEAD"))
            .map_err(clarify_timeout)
    }
}

/// A client socket to 127.0.0.1:`port` with the suite's I/O timeouts and `TCP_NODELAY`.
pub fn connect(port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((LOCALHOST, port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

pub(crate) fn format_request(
    port: u16,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    close: bool,
) -> Vec<u8> {
    let has = |name: &str| headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    let mut head = format!("{method} {target} HTTP/1.1\r\n");
    if !has("host") {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if close && !has("connection") {
        head.push_str("Connection: close\r\n");
    }
    if !body.is_empty() && !has("content-length") && !has("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

pub(crate) fn exchange(port: u16, raw: &[u8], head_request: bool) -> io::Result<Response> {
    let mut stream = connect(port)?;
    // A server may answer (413, 400, ...) and close before reading the whole
    // body; the response is still what the test wants, so only report the
    // write error if no response can be read.
    let written = stream.write_all(raw);
    let mut reader = BufReader::new(stream);
    match read_response(&mut reader, head_request) {
        Ok(resp) => Ok(resp),
        Err(read_err) => Err(written.err().unwrap_or(read_err)),
    }
    .map_err(clarify_timeout)
}

/// Read one response. Interim 1xx responses (100 Continue etc.) are skipped,
/// except 101 which is final. The body is framed by, in order: no body
/// (HEAD, 1xx, 204, 304), chunked, Content-Length, else read to EOF.
pub fn read_response(r: &mut impl BufRead, head_request: bool) -> io::Result<Response> {
    loop {
        let status_line = read_line(r)?.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed before status line",
            )
        })?;
        let status = parse_status_line(&status_line)?;
        let mut headers = Vec::new();
        loop {
            let line = read_line(r)?.ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed inside headers",
                )
            })?;
            if line.is_empty() {
                break;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| bad(format!("malformed header line {line:?}")))?;
            headers.push((name.trim().to_owned(), value.trim().to_owned()));
        }
        if (100..200).contains(&status) && status != 101 {
            continue;
        }
        let mut resp = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
            return Ok(resp);
        }
        let chunked = resp
            .header_all("transfer-encoding")
            .iter()
            .any(|v| v.to_ascii_lowercase().contains("chunked"));
        if chunked {
            resp.body = read_chunked(r)?;
        } else if let Some(len) = resp.header("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {len:?}")))?;
            resp.body = vec![0; len];
            r.read_exact(&mut resp.body)?;
        } else {
            r.read_to_end(&mut resp.body)?;
        }
        return Ok(resp);
    }
}

pub(crate) fn read_chunked(r: &mut impl BufRead) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line = read_line(r)?.ok_or_else(|| bad("EOF before chunk size".into()))?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16)
            .map_err(|_| bad(format!("bad chunk size line {line:?}")))?;
        if size == 0 {
            // Trailers (ignored) up to the blank line that ends the message.
            while !read_line(r)?
                .ok_or_else(|| bad("EOF in chunked trailers".into()))?
                .is_empty()
            {}
            return Ok(body);
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        if read_line(r)?.as_deref() != Some("") {
            return Err(bad("chunk not followed by CRLF".into()));
        }
    }
}

/// One line without its CRLF (or bare LF); `None` on EOF before any byte.
pub(crate) fn read_line(r: &mut impl BufRead) -> io::Result<Option<String>> {
    let mut buf = Vec::new();
    if r.read_until(b'\n', &mut buf)? == 0 {
        return Ok(None);
    }
    if buf.pop() != Some(b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed mid-line",
        ));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

pub(crate) fn parse_status_line(line: &str) -> io::Result<u16> {
    let mut parts = line.splitn(3, ' ');
    match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse()
            .map_err(|_| bad(format!("bad status line {line:?}"))),
        _ => Err(bad(format!("bad status line {line:?}"))),
    }
}

/// A socket timeout surfaces as EAGAIN ("Resource temporarily unavailable");
/// say what actually happened.
pub(crate) fn clarify_timeout(e: io::Error) -> io::Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => io::Error::new(
            io::ErrorKind::TimedOut,
            format!("server sent no (complete) response within {IO_TIMEOUT:?}"),
        ),
        _ => e,
    }
}

pub(crate) fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}
