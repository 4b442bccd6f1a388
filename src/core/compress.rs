//! Compressing what the upstream answers (`compress:`): which answers, with which coding. Pure:
//! the bytes are encoded by `wire::encoder` as they are relayed.

use http::{HeaderMap, StatusCode};

use crate::http::negotiate::{self, Encoding};

/// A `compress:` block, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compress {
    /// In order of preference.
    pub encodings: Vec<Encoding>,
    /// Answers that say they are shorter are sent as they are (an unknown length is not).
    pub min_length: u64,
    /// Media types (`text/html`) or families (`text/*`), lowercase.
    pub types: Vec<String>,
}

/// What an answer says of itself, as far as compressing it goes.
#[derive(Debug, Default, Clone, Copy)]
pub struct AnswerFacts<'a> {
    pub status: Option<StatusCode>,
    pub content_type: Option<&'a [u8]>,
    pub content_encoding: bool,
    pub content_range: bool,
    pub no_transform: bool,
    /// `None`: not known before the body ends (chunked, or until close).
    pub length: Option<u64>,
}

impl<'a> AnswerFacts<'a> {
    /// From an answer's status and header fields (names in any case, as they came).
    pub fn of(status: StatusCode, fields: impl Iterator<Item = (&'a [u8], &'a [u8])>) -> Self {
        let mut facts = AnswerFacts {
            status: Some(status),
            ..AnswerFacts::default()
        };
        for (name, value) in fields {
            let is = |known: &str| name.eq_ignore_ascii_case(known.as_bytes());
            if is("content-type") {
                facts.content_type.get_or_insert(value);
            } else if is("content-encoding") {
                facts.content_encoding = true;
            } else if is("content-range") {
                facts.content_range = true;
            } else if is("cache-control") {
                facts.no_transform |= says_no_transform(value);
            } else if is("content-length") {
                facts.length = std::str::from_utf8(value)
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
            }
        }
        facts
    }
}

/// What to do with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice {
    /// Not a candidate: as it is.
    AsItIs,
    /// A candidate, but this client takes none of the codings: as it is, with
    /// `Vary: Accept-Encoding` (another client's copy would be compressed).
    Vary,
    Encode(Encoding),
}

impl Choice {
    pub fn encoding(self) -> Option<Encoding> {
        match self {
            Choice::Encode(encoding) => Some(encoding),
            Choice::AsItIs | Choice::Vary => None,
        }
    }
}

impl Compress {
    /// The coding for an answer with `facts` to a request with `request` fields.
    pub fn choose(&self, request: &HeaderMap, facts: &AnswerFacts<'_>) -> Choice {
        let candidate = facts.status == Some(StatusCode::OK)
            && !facts.content_encoding
            && !facts.content_range
            && !facts.no_transform
            && !request.contains_key(http::header::RANGE)
            && facts.length.is_none_or(|n| n >= self.min_length)
            && facts.content_type.is_some_and(|t| self.compressible(t));
        if !candidate {
            return Choice::AsItIs;
        }
        let accept = request
            .get(http::header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        self.encodings
            .iter()
            .find(|e| negotiate::accepts(accept, e.token()))
            .map_or(Choice::Vary, |&e| Choice::Encode(e))
    }

    /// Whether a `Content-Type` is one of `types`.
    fn compressible(&self, content_type: &[u8]) -> bool {
        let media = content_type
            .split(|&b| b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        let Ok(media) = std::str::from_utf8(media) else {
            return false;
        };
        let media = media.to_ascii_lowercase();
        self.types.iter().any(|t| match t.strip_suffix('*') {
            Some(family) => media.starts_with(family),
            None => media == *t,
        })
    }
}

/// Whether a `Cache-Control` value says `no-transform`.
pub fn says_no_transform(cache_control: &[u8]) -> bool {
    cache_control
        .split(|&b| b == b',')
        .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compress() -> Compress {
        Compress {
            encodings: vec![Encoding::Zstd, Encoding::Br, Encoding::Gzip],
            min_length: 1024,
            types: vec!["text/*".into(), "application/json".into()],
        }
    }

    fn asking(accept: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::ACCEPT_ENCODING,
            http::HeaderValue::from_static(accept),
        );
        headers
    }

    fn page() -> AnswerFacts<'static> {
        AnswerFacts {
            status: Some(StatusCode::OK),
            content_type: Some(b"text/html; charset=utf-8"),
            length: Some(5000),
            ..AnswerFacts::default()
        }
    }

    #[test]
    fn the_client_s_first_preferred_coding_is_chosen() {
        let c = compress();
        assert_eq!(
            c.choose(&asking("gzip, br"), &page()),
            Choice::Encode(Encoding::Br)
        );
        assert_eq!(
            c.choose(&asking("gzip"), &page()),
            Choice::Encode(Encoding::Gzip)
        );
        assert_eq!(
            c.choose(&asking("zstd;q=1, gzip"), &page()),
            Choice::Encode(Encoding::Zstd)
        );
        assert_eq!(c.choose(&asking("identity"), &page()), Choice::Vary);
        assert_eq!(c.choose(&HeaderMap::new(), &page()), Choice::Vary);
        let json = AnswerFacts {
            content_type: Some(b"Application/JSON"),
            length: None,
            ..page()
        };
        assert_eq!(
            c.choose(&asking("gzip"), &json),
            Choice::Encode(Encoding::Gzip)
        );
    }

    #[test]
    fn what_must_not_be_compressed_goes_as_it_is() {
        let c = compress();
        let gzip = asking("gzip");
        let mut ranged = asking("gzip");
        ranged.insert(
            http::header::RANGE,
            http::HeaderValue::from_static("bytes=0-9"),
        );
        for (what, facts, request) in [
            (
                "encoded",
                AnswerFacts {
                    content_encoding: true,
                    ..page()
                },
                &gzip,
            ),
            (
                "no-transform",
                AnswerFacts {
                    no_transform: true,
                    ..page()
                },
                &gzip,
            ),
            (
                "small",
                AnswerFacts {
                    length: Some(1023),
                    ..page()
                },
                &gzip,
            ),
            (
                "image",
                AnswerFacts {
                    content_type: Some(b"image/png"),
                    ..page()
                },
                &gzip,
            ),
            (
                "no type",
                AnswerFacts {
                    content_type: None,
                    ..page()
                },
                &gzip,
            ),
            (
                "404",
                AnswerFacts {
                    status: Some(StatusCode::NOT_FOUND),
                    ..page()
                },
                &gzip,
            ),
            (
                "partial",
                AnswerFacts {
                    content_range: true,
                    ..page()
                },
                &gzip,
            ),
            ("range asked", page(), &ranged),
        ] {
            assert_eq!(c.choose(request, &facts), Choice::AsItIs, "{what}");
        }
        assert!(says_no_transform(b"public, No-Transform"));
        assert!(!says_no_transform(b"no-store"));
    }
}
