//! The S3 key of a request path: the one function from (route, canonical relative path) to key.
//!
//! Redirects, presigned links, `explain` and `offload` all name objects through
//! [`ObjectKey::of`], so the key a file is uploaded to is the key the proxy redirects to.

use std::fmt;

use crate::core::site::Route;
use crate::core::path::encode_relative;

/// `key_prefix` + the canonical relative path, byte for byte: no Unicode normalisation, and
/// `//` and a trailing `/` stay part of the key. Borrowed, so naming a key allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    prefix: &'a str,
    relative: &'a str,
}

impl<'a> ObjectKey<'a> {
    /// The key of `relative` (from [`crate::core::path::decode_relative`]) under `route`.
    pub fn of(route: &'a Route, relative: &'a str) -> ObjectKey<'a> {
        ObjectKey::from_parts(&route.key_prefix, relative)
    }

    /// The same rule for code without a compiled route (tests, benchmarks).
    pub fn from_parts(key_prefix: &'a str, relative: &'a str) -> ObjectKey<'a> {
        ObjectKey {
            prefix: key_prefix,
            relative,
        }
    }

    /// The last path segment, which is what a download names its file.
    pub fn file_name(&self) -> &'a str {
        self.relative.rsplit('/').next().unwrap_or_default()
    }

    /// Length of the key in bytes.
    pub fn len(&self) -> usize {
        self.prefix.len() + self.relative.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends the key as it goes in a URL path, percent-encoded exactly once.
    pub fn push_encoded(&self, url: &mut String) {
        // S3 encodes a key in a path as a relative path is encoded (`+` is `%2B`, a space
        // `%20`, `/` stays a separator).
        url.extend(encode_relative(self.prefix));
        url.extend(encode_relative(self.relative));
    }

    /// An upper bound of the encoded length, for reserving.
    pub fn encoded_len_bound(&self) -> usize {
        3 * self.len()
    }
}

impl fmt::Display for ObjectKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.prefix)?;
        f.write_str(self.relative)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_the_prefix_and_path_encoded_once_the_s3_way() {
        let cases = [
            ("a.jpg", "up/a.jpg", "up/a.jpg"),
            ("a b+c.jpg", "up/a b+c.jpg", "up/a%20b%2Bc.jpg"),
            ("100%/x~y_z-w", "up/100%/x~y_z-w", "up/100%25/x~y_z-w"),
            ("dir//x/", "up/dir//x/", "up/dir//x/"),
            ("café", "up/café", "up/caf%C3%A9"),
            (
                "(!*'@$&=;:,?#)",
                "up/(!*'@$&=;:,?#)",
                "up/%28%21%2A%27%40%24%26%3D%3B%3A%2C%3F%23%29",
            ),
        ];
        for (relative, key, encoded) in cases {
            let k = ObjectKey::from_parts("up/", relative);
            assert_eq!(k.to_string(), key);
            let mut url = String::new();
            k.push_encoded(&mut url);
            assert_eq!(url, encoded, "key {relative:?}");
            assert!(url.len() <= k.encoded_len_bound());
        }
    }

    #[test]
    fn the_file_name_is_the_last_segment() {
        assert_eq!(ObjectKey::from_parts("up/", "d/r.pdf").file_name(), "r.pdf");
        assert_eq!(ObjectKey::from_parts("up/", "r.pdf").file_name(), "r.pdf");
        assert_eq!(ObjectKey::from_parts("up/", "dir/").file_name(), "");
        assert_eq!(ObjectKey::from_parts("", "").file_name(), "");
    }
}
