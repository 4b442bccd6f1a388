//! `Range: bytes=...` (RFC 9110 §14): which parts of a representation to send.
//!
//! Malformed headers are ignored (a full 200), as the RFC says. Requests that would make the
//! server send far more than the file (many ranges, overlapping ranges: the Apache "Killer"
//! class) are also answered with the whole file once, which is never larger than the file.

/// An inclusive byte range within a representation of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    /// Inclusive, and always below the length.
    pub end: u64,
}

impl ByteRange {
    /// Never zero: an empty range is unsatisfiable and never built.
    pub fn length(&self) -> u64 {
        self.end - self.start + 1
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ranges {
    /// No usable Range header: send everything with 200.
    Full,
    /// 206 with these ranges, in the order requested.
    Partial(Vec<ByteRange>),
    /// 416 with `Content-Range: bytes */len`.
    Unsatisfiable,
}

// Long on purpose: the Range grammar of RFC 9110 14.1.2, case by case.
/// Interprets a Range header for a representation of `len` bytes, allowing at most
/// `max_ranges` ranges.
pub fn parse(header: &str, len: u64, max_ranges: usize) -> Ranges {
    let Some(specs) = strip_unit(header.trim()) else {
        return Ranges::Full;
    };
    let mut ranges = Vec::new();
    let mut count = 0;
    for spec in specs.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        count += 1;
        if count > max_ranges {
            return Ranges::Full;
        }
        let Some((first, last)) = spec.split_once('-') else {
            return Ranges::Full;
        };
        let (first, last) = (first.trim(), last.trim());
        let range = if first.is_empty() {
            // Suffix range: the last `n` bytes.
            let Some(n) = number(last) else {
                return Ranges::Full;
            };
            if n > 0 && len == 0 {
                // Satisfiable (RFC 9110 §14.1.2) yet no Content-Range can describe zero bytes:
                // the Range is ignored and the empty file sent with 200.
                return Ranges::Full;
            }
            (n > 0).then(|| ByteRange {
                start: len - n.min(len),
                end: len - 1,
            })
        } else {
            let Some(start) = number(first) else {
                return Ranges::Full;
            };
            let end = if last.is_empty() {
                u64::MAX
            } else {
                match number(last) {
                    Some(end) if end >= start => end,
                    _ => return Ranges::Full,
                }
            };
            (start < len).then(|| ByteRange {
                start,
                end: end.min(len - 1),
            })
        };
        ranges.extend(range);
    }
    if count == 0 {
        return Ranges::Full;
    }
    if ranges.is_empty() {
        return Ranges::Unsatisfiable;
    }
    if ranges.len() > 1
        && (overlapping(&ranges) || ranges.iter().map(ByteRange::length).sum::<u64>() > len)
    {
        return Ranges::Full;
    }
    Ranges::Partial(ranges)
}

/// `bytes=` with the unit compared case-insensitively.
fn strip_unit(header: &str) -> Option<&str> {
    let (unit, rest) = header.split_once('=')?;
    unit.trim().eq_ignore_ascii_case("bytes").then_some(rest)
}

/// A run of ASCII digits that fits in u64 (`u64::from_str` would also take a `+`).
fn number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn overlapping(ranges: &[ByteRange]) -> bool {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    sorted.windows(2).any(|w| w[1].start <= w[0].end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange { start, end }
    }

    #[test]
    fn ranges_per_rfc_9110() {
        use Ranges::*;
        let cases = [
            ("bytes=0-9", 100, Partial(vec![r(0, 9)])),
            ("bytes=90-", 100, Partial(vec![r(90, 99)])),
            ("bytes=-10", 100, Partial(vec![r(90, 99)])),
            ("bytes=-1000", 100, Partial(vec![r(0, 99)])),
            ("bytes=50-1000", 100, Partial(vec![r(50, 99)])),
            ("BYTES = 0-0", 100, Partial(vec![r(0, 0)])),
            ("bytes=0-1, 5-6", 100, Partial(vec![r(0, 1), r(5, 6)])),
            ("bytes=5-6,0-1", 100, Partial(vec![r(5, 6), r(0, 1)])),
            ("bytes=0-1,,5-6", 100, Partial(vec![r(0, 1), r(5, 6)])),
            ("bytes=0-1,200-300", 100, Partial(vec![r(0, 1)])),
            ("bytes=100-", 100, Unsatisfiable),
            ("bytes=100-200", 100, Unsatisfiable),
            ("bytes=-0", 100, Unsatisfiable),
            ("bytes=0-", 0, Unsatisfiable),
            ("bytes=-5", 0, Full),
            ("bytes=0-0", 0, Unsatisfiable),
            ("bytes=5-1", 100, Full),
            ("bytes=a-b", 100, Full),
            ("bytes=+1-2", 100, Full),
            ("bytes=1", 100, Full),
            ("bytes=", 100, Full),
            ("items=0-1", 100, Full),
            ("0-1", 100, Full),
            ("bytes=0-99999999999999999999999", 100, Full),
            ("bytes=0-10,5-15", 100, Full),
            ("bytes=0-60,-50", 100, Full),
        ];
        for (header, len, want) in cases {
            assert_eq!(parse(header, len, 16), want, "{header:?} of {len}");
        }
    }

    #[test]
    fn too_many_ranges_get_the_whole_file() {
        let many: Vec<String> = (0..17).map(|i| format!("{}-{}", i * 2, i * 2)).collect();
        let header = format!("bytes={}", many.join(","));
        assert_eq!(parse(&header, 100, 16), Ranges::Full);
        let header = format!("bytes={}", many[..16].join(","));
        assert!(matches!(parse(&header, 100, 16), Ranges::Partial(v) if v.len() == 16));
    }
}
