//! `Accept-Encoding` (RFC 9110 §12.5.3): may this client take a precompressed variant?

/// A content coding spillway can serve precompressed, and the suffix of its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Br,
    Zstd,
    Gzip,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Br => "br",
            Encoding::Zstd => "zstd",
            Encoding::Gzip => "gzip",
        }
    }

    /// The file suffix, as written by `brotli`, `zstd` and `gzip`.
    pub fn suffix(self) -> &'static str {
        match self {
            Encoding::Br => ".br",
            Encoding::Zstd => ".zst",
            Encoding::Gzip => ".gz",
        }
    }
}

/// Whether `coding` (e.g. `br`, `gzip`) is acceptable: named (or matched by `*`) with a
/// non-zero quality. An explicit entry for the coding wins over `*`.
pub fn accepts(accept_encoding: &str, coding: &str) -> bool {
    let mut star = None;
    for entry in accept_encoding.split(',') {
        let mut parts = entry.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let acceptable = parts
            .map(str::trim)
            .find_map(|p| p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")))
            .is_none_or(|q| q.trim().parse::<f32>().is_ok_and(|q| q > 0.0));
        if name.eq_ignore_ascii_case(coding)
            || (coding == "gzip" && name.eq_ignore_ascii_case("x-gzip"))
        {
            return acceptable;
        }
        if name == "*" {
            star = Some(acceptable);
        }
    }
    star.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quality_and_wildcards() {
        let cases = [
            ("gzip, deflate, br", "br", true),
            ("gzip, deflate, br", "gzip", true),
            ("gzip", "br", false),
            ("br;q=0", "br", false),
            ("br; q=0.0, gzip", "br", false),
            ("br;q=0.5", "br", true),
            ("*", "br", true),
            ("*;q=0, gzip", "br", false),
            ("*, br;q=0", "br", false),
            ("x-gzip", "gzip", true),
            ("GZIP", "gzip", true),
            ("", "gzip", false),
            ("identity", "gzip", false),
        ];
        for (header, coding, want) in cases {
            assert_eq!(accepts(header, coding), want, "{coding} in {header:?}");
        }
    }
}
