//! An upstream's answer head on the wire: parsed in place with `httparse` and framed strictly
//! (RFC 9112 §6.3). An answer whose body could be delimited two ways is refused rather than
//! guessed at, so nothing the upstream sends can be read as the start of another answer.

use http::StatusCode;

use crate::wire::http1::MAX_HEAD;

/// More header fields than this in one answer are refused (httparse needs its slots up front;
/// pages with many `Set-Cookie` fields stay well under it).
pub const MAX_FIELDS: usize = 128;

/// An answer head, borrowing its reason and fields from the read buffer.
#[derive(Debug)]
pub struct AnswerHead<'s, 'b> {
    pub status: StatusCode,
    pub reason: &'b str,
    /// In the order and spelling the upstream sent.
    pub fields: &'s [httparse::Header<'b>],
    /// How the upstream delimits the body that follows, if the request and status let it
    /// have one (the caller knows: HEAD, 204 and 304 have none).
    pub body: AnswerBody,
    /// Whether the upstream lets the connection carry another request after this answer (by
    /// its version and `Connection`; a body delimited by the close ends it all the same).
    pub keep_alive: bool,
    /// Bytes of the buffer the head occupies.
    pub len: usize,
}

/// How an answer's body is delimited on the upstream connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerBody {
    Length(u64),
    Chunked,
    /// Neither field: the body ends when the upstream closes the connection.
    UntilClose,
}

/// Why an answer head cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AnswerError {
    #[error("a malformed response head")]
    Malformed,
    #[error("a response head larger than 32 KiB or with more than 128 fields")]
    TooLarge,
    #[error("both Content-Length and Transfer-Encoding")]
    LengthAndCoding,
    #[error("two different Content-Length values")]
    ConflictingLengths,
    #[error("an invalid Content-Length")]
    BadLength,
    #[error("a transfer coding other than chunked")]
    Coding,
}

/// Parses the answer head at the start of `buf` into `slots`. `Ok(None)`: not complete yet.
pub fn parse_answer<'s, 'b>(
    buf: &'b [u8],
    slots: &'s mut [httparse::Header<'b>],
) -> Result<Option<AnswerHead<'s, 'b>>, AnswerError> {
    let mut answer = httparse::Response::new(slots);
    let len = match answer.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(AnswerError::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(AnswerError::TooLarge),
        Err(_) => return Err(AnswerError::Malformed),
    };
    if len > MAX_HEAD {
        return Err(AnswerError::TooLarge);
    }
    let (Some(minor), Some(code)) = (answer.version, answer.code) else {
        return Err(AnswerError::Malformed);
    };
    let status = StatusCode::from_u16(code).map_err(|_| AnswerError::Malformed)?;
    let reason = answer.reason.unwrap_or("");
    let fields: &'s [httparse::Header<'b>] = answer.headers;
    let framing = Framing::of(fields)?;
    // An HTTP/1.0 answer with a transfer coding is framed faultily: never reused (RFC 9112
    // §6.1).
    let keep_alive = match minor {
        0 => framing.keep_alive && !framing.close && !framing.chunked,
        _ => !framing.close,
    };
    let body = match (framing.chunked, framing.length) {
        (true, _) => AnswerBody::Chunked,
        (false, Some(length)) => AnswerBody::Length(length),
        (false, None) => AnswerBody::UntilClose,
    };
    Ok(Some(AnswerHead {
        status,
        reason,
        fields,
        body,
        keep_alive,
        len,
    }))
}

/// What an answer's fields say about its framing and its connection.
#[derive(Default)]
struct Framing {
    length: Option<u64>,
    chunked: bool,
    close: bool,
    keep_alive: bool,
}

impl Framing {
    fn of(fields: &[httparse::Header<'_>]) -> Result<Framing, AnswerError> {
        let mut framing = Framing::default();
        let is = |field: &httparse::Header<'_>, name: &str| field.name.eq_ignore_ascii_case(name);
        for field in fields {
            if is(field, "content-length") {
                // `5, 5` is one length said twice (RFC 9110 §8.6); `5, 6` is two.
                for part in field.value.split(|&b| b == b',') {
                    let length = length_of(part.trim_ascii())?;
                    if framing.length.is_some_and(|seen| seen != length) {
                        return Err(AnswerError::ConflictingLengths);
                    }
                    framing.length = Some(length);
                }
            } else if is(field, "transfer-encoding") {
                // Only `chunked`, once: any other coding would reach the client undeclared,
                // and no browser asks for one.
                let chunked = field.value.trim_ascii().eq_ignore_ascii_case(b"chunked");
                if framing.chunked || !chunked {
                    return Err(AnswerError::Coding);
                }
                framing.chunked = true;
            } else if is(field, "connection") {
                for token in field.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                    framing.close |= token.eq_ignore_ascii_case(b"close");
                    framing.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
        }
        if framing.chunked && framing.length.is_some() {
            return Err(AnswerError::LengthAndCoding);
        }
        Ok(framing)
    }
}

/// A `Content-Length` value: decimal digits only, no sign, no overflow.
fn length_of(digits: &[u8]) -> Result<u64, AnswerError> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(AnswerError::BadLength);
    }
    digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)
            .and_then(|n| n.checked_add(u64::from(d - b'0')))
            .ok_or(AnswerError::BadLength)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(u16, AnswerBody, bool, usize)>, AnswerError> {
        let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
        parse_answer(text.as_bytes(), &mut slots)
            .map(|head| head.map(|h| (h.status.as_u16(), h.body, h.keep_alive, h.len)))
    }

    #[test]
    fn framing_and_persistence_are_read_from_the_fields() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(
            parse(head),
            Ok(Some((200, AnswerBody::Length(5), true, head.len() - 5)))
        );
        for (head, body, keep_alive) in [
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked \r\n\r\n",
                AnswerBody::Chunked,
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
                AnswerBody::Length(5),
                true,
            ),
            (
                "HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n",
                AnswerBody::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n",
                AnswerBody::Length(0),
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                AnswerBody::Length(0),
                true,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n",
                AnswerBody::Chunked,
                false,
            ),
            (
                "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
                AnswerBody::Length(0),
                false,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", AnswerBody::UntilClose, true),
        ] {
            assert_eq!(
                parse(head),
                Ok(Some((200, body, keep_alive, head.len()))),
                "{head:?}"
            );
        }
        assert_eq!(parse("HTTP/1.1 200 OK\r\nContent-Le"), Ok(None));
    }

    #[test]
    fn an_answer_framed_two_ways_or_not_at_all_is_refused() {
        for (head, error) in [
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                AnswerError::LengthAndCoding,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
                AnswerError::LengthAndCoding,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
                AnswerError::ConflictingLengths,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n",
                AnswerError::ConflictingLengths,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 0x5\r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                AnswerError::BadLength,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                AnswerError::Coding,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
                AnswerError::Coding,
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\n\r\n",
                AnswerError::Coding,
            ),
            ("HTTP/2 200 OK\r\n\r\n", AnswerError::Malformed),
            ("HTTP/1.1 2000 OK\r\n\r\n", AnswerError::Malformed),
            ("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n", AnswerError::Malformed),
        ] {
            assert_eq!(parse(head), Err(error), "{head:?}");
        }
    }

    #[test]
    fn a_head_too_large_is_refused_not_waited_on() {
        let long = format!("HTTP/1.1 200 OK\r\nX-Long: {}", "a".repeat(MAX_HEAD));
        assert_eq!(parse(&long), Err(AnswerError::TooLarge));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("X-{i}: a\r\n")).collect();
        assert_eq!(
            parse(&format!("HTTP/1.1 200 OK\r\n{many}\r\n")),
            Err(AnswerError::TooLarge)
        );
    }
}
