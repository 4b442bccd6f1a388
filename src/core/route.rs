//! Prefix routing: whole path segments, longest prefix wins.
//!
//! `/static` matches `/static` and `/static/...`, never `/staticfoo` or `/static../x` (the
//! classic off-by-one of string-prefix matching; compare linkerd2-proxy's path matcher).
//! Matching runs on the raw request path: prefixes are checked at load to contain only
//! characters that are never percent-encoded, so the raw and decoded forms agree on them.

/// A set of routes keyed by prefix, generic so it can be tested (and benchmarked) alone.
#[derive(Debug)]
pub struct RouteTable<T> {
    /// Sorted by prefix length, longest first, so the first match is the longest.
    entries: Vec<(String, T)>,
}

/// Why a prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("must start with '/'")]
    NoLeadingSlash,
    #[error("must not contain empty, '.' or '..' segments")]
    BadSegment,
    #[error("may only contain letters, digits, '-', '.', '_', '~' and '/' (write it unencoded)")]
    BadCharacter,
    #[error("duplicates another route's prefix")]
    Duplicate,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        RouteTable {
            entries: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route. A trailing slash is ignored (`/a/` is `/a`); `/` matches every path.
    pub fn insert(&mut self, prefix: &str, value: T) -> Result<(), PrefixError> {
        let prefix = normalize_prefix(prefix)?;
        if self.entries.iter().any(|(p, _)| *p == prefix) {
            return Err(PrefixError::Duplicate);
        }
        let at = self
            .entries
            .partition_point(|(p, _)| p.len() >= prefix.len());
        self.entries.insert(at, (prefix, value));
        Ok(())
    }

    /// The route for `path` and the rest of the path after its prefix (empty, or starting
    /// with `/`).
    pub fn lookup<'p>(&self, path: &'p str) -> Option<(&T, &'p str)> {
        let (prefix, value) = &self.entries[self.position(path)?];
        Some((value, &path[prefix.len()..]))
    }

    /// Where [`RouteTable::lookup`]'s route is in the table: a handle that outlives a borrow of
    /// it (a request's context in Pingora's proxy), for [`RouteTable::get`].
    pub fn position(&self, path: &str) -> Option<usize> {
        self.entries.iter().position(|(prefix, _)| {
            path.strip_prefix(prefix.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        })
    }

    /// The route at a [`RouteTable::position`].
    pub fn get(&self, position: usize) -> Option<&T> {
        self.entries.get(position).map(|(_, value)| value)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &T)> {
        self.entries.iter().map(|(p, v)| (p.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Checks a configured prefix and stores it without a trailing slash (`/` becomes "").
fn normalize_prefix(prefix: &str) -> Result<String, PrefixError> {
    let body = prefix
        .strip_prefix('/')
        .ok_or(PrefixError::NoLeadingSlash)?;
    let body = body.strip_suffix('/').unwrap_or(body);
    if body.is_empty() {
        return Ok(String::new());
    }
    for segment in body.split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(PrefixError::BadSegment);
        }
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
        if !segment.bytes().all(plain) {
            return Err(PrefixError::BadCharacter);
        }
    }
    Ok(format!("/{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        let mut t = RouteTable::default();
        t.insert("/static", "static").unwrap();
        t.insert("/static/img/", "img").unwrap();
        t.insert("/uploads", "uploads").unwrap();
        t
    }

    #[test]
    fn whole_segments_longest_prefix() {
        let t = table();
        let cases = [
            ("/static", Some(("static", ""))),
            ("/static/", Some(("static", "/"))),
            ("/static/a.css", Some(("static", "/a.css"))),
            ("/static/img", Some(("img", ""))),
            ("/static/img/x.png", Some(("img", "/x.png"))),
            ("/static/imgx/x.png", Some(("static", "/imgx/x.png"))),
            ("/staticfoo", None),
            ("/static../secret", None),
            ("/static%2f..", None),
            ("/uploads//a", Some(("uploads", "//a"))),
            ("/", None),
            ("", None),
            ("/upload", None),
        ];
        for (path, want) in cases {
            let got = t.lookup(path).map(|(v, rest)| (*v, rest));
            assert_eq!(got, want, "lookup({path:?})");
        }
    }

    #[test]
    fn root_prefix_catches_everything_else() {
        let mut t = table();
        t.insert("/", "root").unwrap();
        assert_eq!(
            t.lookup("/other").map(|(v, r)| (*v, r)),
            Some(("root", "/other"))
        );
        assert_eq!(
            t.lookup("/static/a").map(|(v, _)| *v),
            Some("static"),
            "longer wins"
        );
    }

    #[test]
    fn bad_prefixes_are_refused() {
        let mut t = RouteTable::default();
        let cases = [
            ("static", PrefixError::NoLeadingSlash),
            ("/a//b", PrefixError::BadSegment),
            ("/a/../b", PrefixError::BadSegment),
            ("/a%20b", PrefixError::BadCharacter),
            ("/a b", PrefixError::BadCharacter),
        ];
        for (prefix, want) in cases {
            assert_eq!(t.insert(prefix, ()), Err(want), "prefix {prefix:?}");
        }
        t.insert("/a", ()).unwrap();
        assert_eq!(
            t.insert("/a/", ()),
            Err(PrefixError::Duplicate),
            "same after normalising"
        );
    }
}
