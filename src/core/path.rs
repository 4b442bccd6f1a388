//! Request path → canonical relative path, decoded exactly once.
//!
//! The result feeds the file lookup, the policy match and the S3 key alike, so they can never
//! disagree about which object a request names. Anything ambiguous is refused rather than
//! repaired: repairing (merging, resolving `..`, decoding twice) is where path confusion starts.

use std::borrow::Cow;

/// Why a path was refused; each maps to `400 Bad Request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("invalid percent-escape")]
    BadEscape,
    #[error("NUL byte in path")]
    Nul,
    #[error("encoded '/' (%2F) in path")]
    EncodedSlash,
    #[error("backslash in path")]
    Backslash,
    #[error("'.' or '..' segment in path")]
    DotSegment,
    #[error("path is not valid UTF-8 once decoded")]
    NotUtf8,
}

/// Decodes the part of a request path after its route prefix (`""` or `/...`) into the path
/// relative to the route: no leading `/`, percent-escapes decoded once, and no segment that
/// could climb out of the route. Borrowed when nothing needed decoding (the common case).
pub fn decode_relative(rest: &str) -> Result<Cow<'_, str>, PathError> {
    let raw = rest.strip_prefix('/').unwrap_or(rest);
    let decoded = if raw.contains('%') {
        Cow::Owned(percent_decode(raw)?)
    } else {
        Cow::Borrowed(raw)
    };
    if decoded.contains('\0') {
        return Err(PathError::Nul);
    }
    if decoded.contains('\\') {
        return Err(PathError::Backslash);
    }
    if decoded.split('/').any(|s| s == "." || s == "..") {
        return Err(PathError::DotSegment);
    }
    Ok(decoded)
}

fn percent_decode(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        let hex = bytes.get(i + 1..i + 3).ok_or(PathError::BadEscape)?;
        let value = (hex_digit(hex[0])? << 4) | hex_digit(hex[1])?;
        if value == b'/' {
            // A slash the client hid from path parsing: a different path to every layer that
            // decodes at a different time. Refuse instead of guessing.
            return Err(PathError::EncodedSlash);
        }
        out.push(value);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| PathError::NotUtf8)
}

fn hex_digit(b: u8) -> Result<u8, PathError> {
    match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(PathError::BadEscape),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::percent::encode_path;

    #[test]
    fn decodes_once_into_a_relative_path() {
        let cases = [
            ("", ""),
            ("/", ""),
            ("/a.jpg", "a.jpg"),
            ("/a%20b.jpg", "a b.jpg"),
            ("/a+b.jpg", "a+b.jpg"),
            ("/%2Bplus", "+plus"),
            ("/%252e%252e", "%2e%2e"),
            ("/caf%C3%A9", "café"),
            ("/dir/", "dir/"),
            ("/a//b", "a//b"),
            ("/.well-known/x", ".well-known/x"),
            ("/a..b/c...", "a..b/c..."),
        ];
        for (input, want) in cases {
            assert_eq!(
                decode_relative(input).as_deref(),
                Ok(want),
                "decode {input:?}"
            );
        }
        assert!(
            matches!(decode_relative("/plain/path.txt"), Ok(Cow::Borrowed(_))),
            "no escapes, no allocation"
        );
    }

    #[test]
    fn encoding_is_decodings_inverse() {
        for relative in [
            "a b+c.jpg",
            "100%/x",
            "café/日本.txt",
            "a//b/",
            "(#?&=)",
            ".env",
        ] {
            let encoded = format!("/{}", encode_path(relative));
            assert_eq!(
                decode_relative(&encoded).as_deref(),
                Ok(relative),
                "{encoded}"
            );
        }
        assert_eq!(encode_path("a b/c?d").to_string(), "a%20b/c%3Fd");
    }

    #[test]
    fn refuses_ambiguous_paths() {
        let cases = [
            ("/%", PathError::BadEscape),
            ("/%2", PathError::BadEscape),
            ("/%zz", PathError::BadEscape),
            ("/%%30", PathError::BadEscape),
            ("/a%00b", PathError::Nul),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a\\b", PathError::Backslash),
            ("/a%5cb", PathError::Backslash),
            ("/..", PathError::DotSegment),
            ("/a/../b", PathError::DotSegment),
            ("/a/%2e%2e/b", PathError::DotSegment),
            ("/a/.%2E", PathError::DotSegment),
            ("/./a", PathError::DotSegment),
            ("/a/.", PathError::DotSegment),
            ("/%c0%ae%c0%ae", PathError::NotUtf8),
            ("/%ff", PathError::NotUtf8),
        ];
        for (input, want) in cases {
            assert_eq!(decode_relative(input), Err(want), "decode {input:?}");
        }
    }
}
