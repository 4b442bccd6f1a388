//! An S3 object key as `key_prefix` + a canonical relative path, and its encoding in a URL.
//! Which prefix and path a request names is `core::key`'s to say.

use std::fmt;

use crate::http::percent::encode_path;

/// `key_prefix` + the canonical relative path, byte for byte: no Unicode normalisation, and
/// `//` and a trailing `/` stay part of the key. Borrowed, so naming a key allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectKey<'a> {
    prefix: &'a str,
    relative: &'a str,
}

impl<'a> ObjectKey<'a> {
    /// `key_prefix` followed by `relative`, a canonical relative path.
    pub fn new(key_prefix: &'a str, relative: &'a str) -> ObjectKey<'a> {
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
        url.extend(encode_path(self.prefix));
        url.extend(encode_path(self.relative));
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
            let k = ObjectKey::new("up/", relative);
            assert_eq!(k.to_string(), key);
            let mut url = String::new();
            k.push_encoded(&mut url);
            assert_eq!(url, encoded, "key {relative:?}");
            assert!(url.len() <= k.encoded_len_bound());
        }
    }

    #[test]
    fn the_file_name_is_the_last_segment() {
        assert_eq!(ObjectKey::new("up/", "d/r.pdf").file_name(), "r.pdf");
        assert_eq!(ObjectKey::new("up/", "r.pdf").file_name(), "r.pdf");
        assert_eq!(ObjectKey::new("up/", "dir/").file_name(), "");
        assert_eq!(ObjectKey::new("", "").file_name(), "");
    }
}
