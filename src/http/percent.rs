//! Percent-encoding of paths: one rule for request paths and S3 keys alike.

use percent_encoding::{utf8_percent_encode, AsciiSet, PercentEncode, NON_ALPHANUMERIC};

/// Bytes that stay literal when a path is encoded: RFC 3986 unreserved characters and `/`.
/// S3 encodes keys the same way (`+` is `%2B`, a space `%20`).
const LITERAL: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

/// The one canonical encoding of a path (the inverse of `core::path::decode_relative`), for
/// building a request path from a file name, and an S3 key's path from the key.
pub fn encode_path(path: &str) -> PercentEncode<'_> {
    utf8_percent_encode(path, LITERAL)
}
