//! HTTP/1.x on the wire for the requests spillway answers itself: parsing a request head and
//! writing a response head. Pure functions over byte buffers; `front` and `respond` do the I/O.
//!
//! Why not Pingora's session for these: its per-request machinery (header maps with preserved
//! case, response header objects, the proxy's module and filter phases) cost more CPU than the
//! whole decision. A request head is parsed once here with `httparse` (the parser Pingora
//! itself uses); only requests that go to the upstream are handed to Pingora's proxy.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};

/// Larger request heads are refused with 431 (nginx's default allows 4 × 8 KiB).
pub const MAX_HEAD: usize = 32 * 1024;
/// More header fields than this are refused with 431 (httparse needs its slots up front).
const MAX_HEADERS: usize = 100;

/// A parsed request head, borrowing the path and query from the read buffer.
#[derive(Debug)]
pub struct RequestHead<'b> {
    pub method: Method,
    /// The path as sent (still percent-encoded); `*` for `OPTIONS *`.
    pub path: &'b str,
    pub query: Option<&'b str>,
    pub headers: HeaderMap,
    /// HTTP/1.0: keep-alive only when asked for, and answered with `Connection: keep-alive`.
    pub http10: bool,
    /// Whether the client lets the connection live on after this exchange.
    pub keep_alive: bool,
    pub body: BodyLength,
    /// The client waits for `100 Continue` before sending its body.
    pub expects_continue: bool,
    /// Bytes of the buffer the head occupies; the body (if any) follows.
    pub len: usize,
    /// The request target as sent: a path (`/a?b`, origin-form), `http://host/a?b`
    /// (absolute-form) or `*`.
    pub target: &'b str,
}

/// How the request body is framed (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    None,
    Length(u64),
    Chunked,
}

/// Why a request head is refused; the connection closes after the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeadError {
    #[error("malformed request head")]
    Malformed,
    #[error("conflicting or invalid body framing")]
    BadFraming,
    #[error("request head too large")]
    TooLarge,
    #[error("HTTP version not supported")]
    Version,
    #[error("missing, repeated or invalid Host")]
    Host,
    /// A byte RFC 3986 never leaves unencoded in a path or query (a space, `"`, `<`, `>`, `\`,
    /// `^`, a backtick, `{`, `|`, `}`, `#`, `[`, `]`, a control or non-ASCII byte): refused at
    /// the front, so the upstream is never blamed for a target nothing could relay.
    #[error("a character that must be percent-encoded in the request target")]
    Target,
}

impl HeadError {
    pub fn status(self) -> StatusCode {
        match self {
            HeadError::Malformed | HeadError::BadFraming | HeadError::Host | HeadError::Target => {
                StatusCode::BAD_REQUEST
            }
            HeadError::TooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }
}

/// Parses the request head at the start of `buf`. `Ok(None)`: not complete yet.
pub fn parse_request(buf: &[u8]) -> Result<Option<RequestHead<'_>>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(httparse::Error::Version) => return Err(version_error(buf)),
        Err(_) => return Err(HeadError::Malformed),
    };
    if len > MAX_HEAD {
        return Err(HeadError::TooLarge);
    }
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed);
    };
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| HeadError::Malformed)?;
    let (path, query) = split_target(target)?;
    let http10 = minor == 0;

    let mut headers = HeaderMap::with_capacity(req.headers.len());
    for field in req.headers.iter() {
        let name =
            HeaderName::from_bytes(field.name.as_bytes()).map_err(|_| HeadError::Malformed)?;
        let value = HeaderValue::from_bytes(field.value).map_err(|_| HeadError::Malformed)?;
        headers.append(name, value);
    }
    if !http10 && !valid_host(&headers) {
        return Err(HeadError::Host);
    }
    let body = body_length(&headers, http10)?;
    let keep_alive = if http10 {
        has_token(&headers, http::header::CONNECTION, "keep-alive")
    } else {
        !has_token(&headers, http::header::CONNECTION, "close")
    };
    let expects_continue = !http10 && has_token(&headers, http::header::EXPECT, "100-continue");
    Ok(Some(RequestHead {
        method,
        path,
        query,
        headers,
        http10,
        keep_alive,
        body,
        expects_continue,
        len,
        target,
    }))
}

/// A request for HTTP/1.2 (or any 1.x above 1.1) is answered as 1.1, the highest minor version
/// spoken here (RFC 9112 §2.3): the request line is rewritten in place before parsing.
pub fn speak_highest_minor(buf: &mut [u8]) {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = &buf[..line_end];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let [.., b' ', b'H', b'T', b'T', b'P', b'/', b'1', b'.', minor] = line {
        if minor.is_ascii_digit() && *minor > b'1' {
            let at = line.len() - 1;
            buf[at] = b'1';
        }
    }
}

/// httparse reports any request line it cannot read up to a valid version as a version error;
/// only a well-formed `HTTP/x.y` it does not speak is a 505, anything else is a bad request.
fn version_error(buf: &[u8]) -> HeadError {
    let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let parts: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
    match parts.as_slice() {
        [_, _, [b'H', b'T', b'T', b'P', b'/', major, b'.', minor]]
            if major.is_ascii_digit() && minor.is_ascii_digit() =>
        {
            HeadError::Version
        }
        _ => HeadError::Malformed,
    }
}

/// HTTP/1.1 requests carry exactly one Host, empty or a valid authority (RFC 9112 §3.2).
fn valid_host(headers: &HeaderMap) -> bool {
    let mut hosts = headers.get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(host), None) => {
            host.is_empty()
                || http::uri::Authority::try_from(host.as_bytes())
                    .is_ok_and(|a| !a.as_str().contains('@'))
        }
        _ => false,
    }
}

/// Origin form (`/a?b`), asterisk form (`*`) and absolute form (`http://host/a?b`, which
/// proxies may send; the authority is not used: `Location` never comes from the request's host).
fn split_target(target: &str) -> Result<(&str, Option<&str>), HeadError> {
    let path_and_query = if target.starts_with('/') || target == "*" {
        target
    } else if let Some(rest) = strip_scheme(target) {
        match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
            // `http://host` or `http://host?q`: the path is `/` (RFC 9112 §3.2.2).
            _ => "/",
        }
    } else {
        return Err(HeadError::Malformed);
    };
    if !path_and_query.bytes().all(allowed_in_target) {
        return Err(HeadError::Target);
    }
    Ok(match path_and_query.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path_and_query, None),
    })
}

/// RFC 3986's unreserved and reserved characters and `%`: what a path or a query may hold as
/// it is. (`#` starts a fragment, which a client never sends; `[` and `]` only bracket an IPv6
/// host, which is not part of a path.)
fn allowed_in_target(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
                | b'/'
                | b'?'
                | b'%'
        )
}

fn strip_scheme(target: &str) -> Option<&str> {
    let (scheme, rest) = target.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// RFC 9112 §6.3, strictly: any ambiguity is a 400, because a proxy and its upstream that
/// disagree on where a body ends can be made to see different requests (request smuggling).
fn body_length(headers: &HeaderMap, http10: bool) -> Result<BodyLength, HeadError> {
    let mut transfer_codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty())
        .peekable();
    if transfer_codings.peek().is_some() {
        let chunked_last = transfer_codings
            .last()
            .is_some_and(|t| t.eq_ignore_ascii_case(b"chunked"));
        if http10 || !chunked_last || headers.contains_key(http::header::CONTENT_LENGTH) {
            return Err(HeadError::BadFraming);
        }
        return Ok(BodyLength::Chunked);
    }
    let mut length = None;
    for value in headers.get_all(http::header::CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) {
                return Err(HeadError::BadFraming);
            }
            let n: u64 = std::str::from_utf8(item)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(HeadError::BadFraming)?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::BadFraming);
            }
            length = Some(n);
        }
    }
    Ok(match length {
        None | Some(0) => BodyLength::None,
        Some(n) => BodyLength::Length(n),
    })
}

/// Whether the comma-separated header `name` lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// What the response says about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// HTTP/1.1 default: nothing to say.
    KeepAlive,
    /// An HTTP/1.0 client that asked for keep-alive gets it confirmed.
    KeepAlive10,
    /// `Connection: close`: the server closes after this response.
    Close,
}

impl Persistence {
    /// For a response after which the connection lives on (`keep_alive`) or not.
    pub fn of(keep_alive: bool, http10: bool) -> Persistence {
        match (keep_alive, http10) {
            (false, _) => Persistence::Close,
            (true, true) => Persistence::KeepAlive10,
            (true, false) => Persistence::KeepAlive,
        }
    }
}

/// Appends a response head to `out`: `start`, any number of `header`s, then `finish`.
pub struct ResponseHead<'o> {
    out: &'o mut Vec<u8>,
}

impl<'o> ResponseHead<'o> {
    /// Goes on with a head already started in `out`.
    pub fn on(out: &'o mut Vec<u8>) -> ResponseHead<'o> {
        ResponseHead { out }
    }

    pub fn start(out: &'o mut Vec<u8>, status: StatusCode) -> ResponseHead<'o> {
        Self::start_with(out, status, None)
    }

    /// With the reason phrase given (a relayed one), else the standard one.
    pub fn start_with(
        out: &'o mut Vec<u8>,
        status: StatusCode,
        reason: Option<&str>,
    ) -> ResponseHead<'o> {
        // The one place a reason phrase is chosen; `StatusCode`'s `Display` has the same text.
        let reason = reason.or(status.canonical_reason()).unwrap_or("");
        let _ = write!(out, "HTTP/1.1 {} {reason}\r\n", status.as_str());
        ResponseHead { out }
    }

    pub fn header(&mut self, name: &str, value: impl AsRef<[u8]>) -> &mut Self {
        self.header_spelled(name.as_bytes(), value)
    }

    /// A field whose name is bytes as they came (a relayed field, in its sender's spelling).
    pub fn header_spelled(&mut self, name: &[u8], value: impl AsRef<[u8]>) -> &mut Self {
        self.out.extend_from_slice(name);
        self.out.extend_from_slice(b": ");
        self.out.extend_from_slice(value.as_ref());
        self.out.extend_from_slice(b"\r\n");
        self
    }

    pub fn number(&mut self, name: &str, value: u64) -> &mut Self {
        let _ = write!(self.out, "{name}: {value}\r\n");
        self
    }

    /// Adds `Date` and the connection header, and ends the head.
    pub fn finish(self, persistence: Persistence) {
        with_http_date(|date| {
            self.out.extend_from_slice(b"Date: ");
            self.out.extend_from_slice(date);
            self.out.extend_from_slice(b"\r\n");
        });
        match persistence {
            Persistence::KeepAlive => {}
            Persistence::KeepAlive10 => self.out.extend_from_slice(b"Connection: keep-alive\r\n"),
            Persistence::Close => self.out.extend_from_slice(b"Connection: close\r\n"),
        }
        self.out.extend_from_slice(b"\r\n");
    }
}

/// The `Date` header value, formatted once per second per thread (RFC 9110 §6.6.1: an origin
/// server with a clock must send it).
fn with_http_date(f: impl FnOnce(&[u8])) {
    thread_local! {
        static CACHED: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHED.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != second {
            *cached = (second, httpdate::fmt_http_date(now));
        }
        f(cached.1.as_bytes());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Option<RequestHead<'_>>, HeadError> {
        parse_request(raw.as_bytes())
    }

    fn head(raw: &str) -> RequestHead<'_> {
        parse(raw).unwrap().expect("complete")
    }

    #[test]
    fn splits_origin_form_targets() {
        let h = head("GET /a/b%20c?x=1&y HTTP/1.1\r\nHost: h\r\n\r\nrest");
        assert_eq!(h.method, Method::GET);
        assert_eq!((h.path, h.query), ("/a/b%20c", Some("x=1&y")));
        assert_eq!(
            h.len,
            "GET /a/b%20c?x=1&y HTTP/1.1\r\nHost: h\r\n\r\n".len()
        );
        assert_eq!(h.headers["host"], "h");
        assert!(h.keep_alive && !h.http10);
        assert_eq!(h.body, BodyLength::None);
    }

    #[test]
    fn absolute_and_asterisk_forms_use_only_the_path() {
        let h = head("GET http://evil.example/up/x?q HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.path, h.query), ("/up/x", Some("q")));
        let h = head("GET HTTPS://evil.example HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!((h.path, h.query), ("/", None));
        let h = head("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.path, "*");
        assert_eq!(
            parse("GET ftp://x/y HTTP/1.1\r\nHost: h\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
        assert_eq!(
            parse("GET relative HTTP/1.1\r\nHost: h\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn incomplete_heads_wait_and_oversized_ones_are_refused() {
        assert!(parse("GET / HTTP/1.1\r\nHost: h\r\n").unwrap().is_none());
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n",
            "a".repeat(MAX_HEAD)
        );
        assert_eq!(parse(&big).unwrap_err(), HeadError::TooLarge);
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: h\r\n{many}\r\n");
        assert_eq!(parse(&req).unwrap_err(), HeadError::TooLarge);
        assert_eq!(
            parse("GET / HTTP/2.0\r\n\r\n").unwrap_err(),
            HeadError::Version
        );
        assert_eq!(
            parse("GET / HTTP/1.1\r\nHost: h\r\nBad Name: v\r\n\r\n").unwrap_err(),
            HeadError::Malformed
        );
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        for bad in [
            "",
            "Host: a\r\nHost: b\r\n",
            "Host: a b\r\n",
            "Host: u@h\r\n",
        ] {
            let raw = format!("GET / HTTP/1.1\r\n{bad}\r\n");
            assert_eq!(parse(&raw).unwrap_err(), HeadError::Host, "{bad:?}");
        }
        for good in ["Host: \r\n", "Host: h:8080\r\n", "Host: [::1]:80\r\n"] {
            let raw = format!("GET / HTTP/1.1\r\n{good}\r\n");
            assert!(parse(&raw).unwrap().is_some(), "{good:?}");
        }
        assert!(parse("GET / HTTP/1.0\r\n\r\n").unwrap().is_some());
    }

    #[test]
    fn connection_persistence_follows_the_version() {
        assert!(!head("GET / HTTP/1.1\r\nHost: h\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head("GET / HTTP/1.1\r\nHost: h\r\nConnection: te, close\r\n\r\n").keep_alive);
        let h = head("GET / HTTP/1.0\r\n\r\n");
        assert!(h.http10 && !h.keep_alive);
        assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
        assert!(
            head("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\n\r\n").expects_continue
        );
    }

    #[test]
    fn body_framing_is_strict() {
        let cases: &[(&str, Result<BodyLength, HeadError>)] = &[
            ("Content-Length: 5", Ok(BodyLength::Length(5))),
            ("Content-Length: 0", Ok(BodyLength::None)),
            ("Content-Length: 5, 5", Ok(BodyLength::Length(5))),
            (
                "Content-Length: 5\r\nContent-Length: 5",
                Ok(BodyLength::Length(5)),
            ),
            ("Content-Length: 5, 6", Err(HeadError::BadFraming)),
            ("Content-Length: +5", Err(HeadError::BadFraming)),
            ("Content-Length: 5x", Err(HeadError::BadFraming)),
            (
                "Content-Length: 99999999999999999999999",
                Err(HeadError::BadFraming),
            ),
            ("Transfer-Encoding: chunked", Ok(BodyLength::Chunked)),
            ("Transfer-Encoding: gzip, Chunked", Ok(BodyLength::Chunked)),
            (
                "Transfer-Encoding: chunked, gzip",
                Err(HeadError::BadFraming),
            ),
            (
                "Transfer-Encoding: chunked\r\nContent-Length: 5",
                Err(HeadError::BadFraming),
            ),
        ];
        for (fields, want) in cases {
            let raw = format!("POST / HTTP/1.1\r\nHost: h\r\n{fields}\r\n\r\n");
            assert_eq!(parse(&raw).map(|h| h.unwrap().body), *want, "{fields}");
        }
        assert_eq!(
            parse("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            HeadError::BadFraming
        );
    }

    #[test]
    fn higher_minor_versions_are_spoken_as_1_1() {
        for (raw, want) in [
            ("GET / HTTP/1.2\r\nHost: h\r\n\r\n", "GET / HTTP/1.1\r\n"),
            ("GET / HTTP/1.9\n\n", "GET / HTTP/1.1\n"),
            ("GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\n"),
            ("GET / HTTP/2.0\r\n\r\n", "GET / HTTP/2.0\r\n"),
        ] {
            let mut buf = raw.as_bytes().to_vec();
            speak_highest_minor(&mut buf);
            assert!(buf.starts_with(want.as_bytes()), "{raw:?}");
        }
        let mut buf = b"GET / HTTP/1.2\r\nHost: h\r\n\r\n".to_vec();
        speak_highest_minor(&mut buf);
        assert!(parse_request(&buf).unwrap().is_some());
    }

    #[test]
    fn response_heads_are_well_formed() {
        let mut out = Vec::new();
        let mut head = ResponseHead::start(&mut out, StatusCode::FOUND);
        head.header("Location", "/x").number("Content-Length", 0);
        head.finish(Persistence::Close);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\nDate: ")
        );
        assert!(
            text.ends_with(" GMT\r\nConnection: close\r\n\r\n"),
            "{text}"
        );
        let date = text
            .split("Date: ")
            .nth(1)
            .unwrap()
            .split("\r\n")
            .next()
            .unwrap();
        assert!(httpdate::parse_http_date(date).is_ok(), "{date}");
    }
}
