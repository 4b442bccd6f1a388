//! The chunked transfer coding of an upstream's answer (RFC 9112 §7.1), taken off as the bytes
//! arrive: the data of each chunk is handed on in place, the framing is checked byte by byte,
//! and anything that is not exactly chunked is an error (the connection is then not reused).

use crate::wire::http1::MAX_HEAD;

/// A chunk-size line (size and extensions) may be this long.
const MAX_SIZE_LINE: usize = 4096;
/// A chunk size has at most this many hex digits (a u64).
const MAX_SIZE_DIGITS: u8 = 16;

/// Where the decoder stands in the coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the chunk size: its value so far and how many digits it had.
    Size {
        value: u64,
        digits: u8,
    },
    /// Whitespace after the size, before `;` or the line's end.
    SizeSpace {
        value: u64,
    },
    /// After `;`: extensions, ignored, up to the line's end.
    Extensions {
        value: u64,
    },
    /// The LF after a chunk-size line; the size is `value`.
    SizeEnd {
        value: u64,
    },
    /// This many data bytes still to come in the current chunk.
    Data(u64),
    DataCr,
    DataLf,
    /// At the start of a trailer line (or the empty line that ends the body).
    TrailerStart,
    InTrailer,
    TrailerLf,
    LastLf,
    Done,
}

/// Why a chunked body cannot be relayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a malformed chunked body")]
pub struct ChunkError;

/// Takes the chunked coding off a body, piece by piece.
#[derive(Debug)]
pub struct Dechunker {
    state: State,
    /// Bytes of the current size line, or of all the trailers.
    line: usize,
}

impl Default for Dechunker {
    fn default() -> Self {
        Dechunker {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line: 0,
        }
    }
}

impl Dechunker {
    /// Whether the last chunk and the trailers have been read: the body is complete.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// Reads coded bytes from `input`, handing the data in them to `data`; returns how many
    /// bytes were taken (fewer than `input` only once the body is done: what follows is not
    /// the body's).
    pub fn feed<'a>(
        &mut self,
        input: &'a [u8],
        mut data: impl FnMut(&'a [u8]),
    ) -> Result<usize, ChunkError> {
        let mut at = 0;
        while at < input.len() && self.state != State::Done {
            if let State::Data(left) = self.state {
                let take = (input.len() - at).min(usize::try_from(left).unwrap_or(usize::MAX));
                data(&input[at..at + take]);
                at += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataCr
                } else {
                    State::Data(left)
                };
                continue;
            }
            self.state = self.step(input[at])?;
            at += 1;
        }
        Ok(at)
    }

    /// One byte of framing.
    fn step(&mut self, byte: u8) -> Result<State, ChunkError> {
        use State::*;
        self.line += 1;
        let next = match (self.state, byte) {
            (Size { value, digits }, _) if byte.is_ascii_hexdigit() => {
                if digits == MAX_SIZE_DIGITS {
                    return Err(ChunkError);
                }
                let digit = u64::from((byte as char).to_digit(16).ok_or(ChunkError)?);
                Size {
                    value: value << 4 | digit,
                    digits: digits + 1,
                }
            }
            (Size { value, digits: 1.. } | SizeSpace { value }, b' ' | b'\t') => {
                SizeSpace { value }
            }
            (Size { value, digits: 1.. } | SizeSpace { value }, b';') => Extensions { value },
            (Size { value, digits: 1.. } | SizeSpace { value } | Extensions { value }, b'\r') => {
                SizeEnd { value }
            }
            (Extensions { value }, b'\t' | b' '..=b'~' | 0x80..) => Extensions { value },
            (SizeEnd { value }, b'\n') => {
                self.line = 0;
                match value {
                    0 => TrailerStart,
                    n => Data(n),
                }
            }
            (DataCr, b'\r') => DataLf,
            (DataLf, b'\n') => {
                self.line = 0;
                Size {
                    value: 0,
                    digits: 0,
                }
            }
            (TrailerStart, b'\r') => LastLf,
            (TrailerStart | InTrailer, b'\t' | b' '..=b'~' | 0x80..) => InTrailer,
            (InTrailer, b'\r') => TrailerLf,
            (TrailerLf, b'\n') => TrailerStart,
            (LastLf, b'\n') => Done,
            _ => return Err(ChunkError),
        };
        let limit = match next {
            TrailerStart | InTrailer | TrailerLf | LastLf | Done => MAX_HEAD,
            _ => MAX_SIZE_LINE,
        };
        if self.line > limit {
            return Err(ChunkError);
        }
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes `coded` fed in pieces of `step` bytes: the data, and how much was taken.
    fn decode(coded: &[u8], step: usize) -> Result<(Vec<u8>, usize, bool), ChunkError> {
        let mut dechunker = Dechunker::default();
        let mut data = Vec::new();
        let mut taken = 0;
        for piece in coded.chunks(step) {
            let n = dechunker.feed(piece, |d| data.extend_from_slice(d))?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((data, taken, dechunker.done()))
    }

    #[test]
    fn chunks_extensions_and_trailers_come_off_in_any_pieces() {
        let coded = b"5\r\nhello\r\n6 ; name=\"v\"\r\n world\r\nA\r\n0123456789\r\n0\r\nX-Sum: 1\r\n\r\nNEXT";
        for step in 1..=coded.len() {
            let (data, taken, done) = decode(coded, step).expect("valid");
            assert_eq!(data, b"hello world0123456789", "step {step}");
            assert!(done, "step {step}");
            assert_eq!(
                taken,
                coded.len() - 4,
                "what follows is not taken, step {step}"
            );
        }
        let (data, _, done) = decode(b"5\r\nhel", 3).expect("valid so far");
        assert_eq!((data.as_slice(), done), (&b"hel"[..], false));
    }

    #[test]
    fn anything_not_exactly_chunked_is_refused() {
        for bad in [
            &b"\r\n"[..],
            b"g\r\n",
            b"-5\r\nhello\r\n",
            b"0x5\r\nhello\r\n",
            b"5\nhello\r\n0\r\n\r\n",
            b"5\r\nhello\n0\r\n\r\n",
            b"5\r\nhelloX\r\n",
            b"5 x\r\nhello\r\n",
            b"5;a\nb\r\n",
            b"10000000000000000\r\n",
            b"0\r\nX-Sum: 1\n\r\n",
            b"0\r\n\rX",
        ] {
            assert_eq!(
                decode(bad, 1),
                Err(ChunkError),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_line = [b"5;".as_slice(), &[b'a'; MAX_SIZE_LINE], b"\r\n"].concat();
        assert_eq!(decode(&long_line, 4096), Err(ChunkError));
        // Trailers longer than a size line, shorter than a head: fine, to the last byte.
        let trailer = [b"0\r\nX: ".as_slice(), &[b'a'; 4100], b"\r\n\r\n"].concat();
        assert_eq!(
            decode(&trailer, 4096),
            Ok((Vec::new(), trailer.len(), true))
        );
        let long_trailer = [b"0\r\nX: ".as_slice(), &[b'a'; MAX_HEAD], b"\r\n\r\n"].concat();
        assert_eq!(decode(&long_trailer, 4096), Err(ChunkError));
        // The largest size that fits is a size, not an overflow.
        let (_, _, done) = decode(b"ffffffffffffffff\r\nab", 64).expect("a huge chunk, begun");
        assert!(!done);
    }
}
