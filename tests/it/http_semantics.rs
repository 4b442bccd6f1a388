//! HTTP semantics of local files, over real sockets against the real binary: ranges
//! (RFC 9110 §14) and conditional requests (RFC 9110 §13).
//!
//! The first three tests port nginx-tests (github.com/nginx/nginx-tests, read at commit
//! 76bb761c): `range.t`, `range_if_range.t` and `not_modified.t`, one row per request there,
//! named after nginx's own test names so the two can be compared side by side. Where nginx's
//! behaviour is nginx-specific (a config directive spillway does not have, or a choice the RFC
//! leaves open and spillway makes differently) the row is adapted or dropped, with the reason
//! next to it. The remaining tests are RFC 9110 cases nginx-tests does not cover.
//!
//! How the tables run: each test starts one `Stack` and sends all its rows over ONE keep-alive
//! connection. That is cheaper than a connection per row, and it checks framing for free: a
//! response with a wrong `Content-Length`, or a body after a HEAD or a 304, would garble the
//! response the next row reads. Every table ends with a plain GET for the same reason.
//!
//! Every file lives in the test's own temp dir and every stack has its own port, so the tests
//! are parallel-safe; nothing sleeps. Timestamps that a row depends on are pinned with
//! `set_modified` instead of relying on the clock.

use crate::support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::{request, Conn, Response, Stack};

// ---------------------------------------------------------------------------
// nginx-tests: range.t
// ---------------------------------------------------------------------------

/// range.t: 18 requests against a 1000-byte file; 16 ported (7 of them adapted), 2 dropped.
#[test]
fn nginx_range_t() {
    let stack = Stack::start();
    let t1 = put(&stack, "t1.html", nginx_t1_html());

    let rows = vec![
        get(
            "range request",
            &[("Range", "bytes=0-8")],
            Expect::Range(0, 8),
        ),
        get(
            "final bytes",
            &[("Range", "bytes=-10")],
            Expect::Range(990, 999),
        ),
        get(
            "final bytes explicit",
            &[("Range", "bytes=990-")],
            Expect::Range(990, 999),
        ),
        get(
            "more than length",
            &[("Range", "bytes=990-1990")],
            Expect::Range(990, 999),
        ),
        // Dropped: "recoded" (t2.html with `charset A; source_charset B`). spillway never
        // recodes a body, so there is nothing to port; the same range on an unrecoded file is
        // "more than length" above.
        get(
            "multipart",
            &[("Range", "bytes=0-9, -10, 10-19")],
            Expect::Parts(vec![(0, 9), (990, 999), (10, 19)]),
        ),
        // The unsatisfiable 100000- is left out of the parts; the others still are served.
        get(
            "multipart big",
            &[("Range", "bytes=0-9, -10, 100000-, 10-19")],
            Expect::Parts(vec![(0, 9), (990, 999), (10, 19)]),
        ),
        get(
            "not satisfiable - too big first byte pos",
            &[("Range", "bytes=100000-")],
            Expect::Unsatisfiable,
        ),
        // Adapted, the next four: nginx answers a syntactically invalid Range with 416. RFC 9110
        // §14.2 lets a server ignore an invalid ranges-specifier, and spillway does: the whole
        // file with 200, as most servers and caches do.
        get(
            "not satisfiable - alpha in first byte pos (adapted: ignored)",
            &[("Range", "bytes=alpha")],
            Expect::Whole,
        ),
        get(
            "not satisfiable - alpha in last byte pos (adapted: ignored)",
            &[("Range", "bytes=10-alpha")],
            Expect::Whole,
        ),
        get(
            "not satisfiable - no hyphen (adapted: ignored)",
            &[("Range", "bytes=10")],
            Expect::Whole,
        ),
        get(
            "not satisfiable - no comma (adapted: ignored)",
            &[("Range", "bytes=10-11 12-")],
            Expect::Whole,
        ),
        // A last-byte-pos past the end is clamped to the last byte (RFC 9110 §14.1.2).
        get(
            "satisfiable - last byte pos adjusted",
            &[("Range", "bytes=0-10001")],
            Expect::Range(0, 999),
        ),
        // More bytes asked for than the file has: the whole file once, never amplified.
        get(
            "not satisfiable - malicious byte ranges",
            &[("Range", "bytes=0-10001, 0-0")],
            Expect::Whole,
        ),
        // Adapted, the next three: nginx's t3.html has `max_ranges 2`; spillway's limit is fixed
        // at 16 (serve::MAX_RANGES) and not configurable, so the same three situations are built
        // around 16: at the limit, at the limit with one range unsatisfiable, over the limit.
        get(
            "max_ranges not reached (adapted: 16 ranges)",
            &[("Range", &range_header(&spaced(16)))],
            Expect::Parts(spaced(16)),
        ),
        get(
            "max_ranges not reached bad range (adapted: 15 ranges + 10000-)",
            &[("Range", &format!("{},10000-", range_header(&spaced(15))))],
            Expect::Parts(spaced(15)),
        ),
        get(
            "max_ranges reached (adapted: 17 ranges)",
            &[("Range", &range_header(&spaced(17)))],
            Expect::Whole,
        ),
        // Dropped: "max_ranges zero" (t4.html, `max_ranges 0` turns ranges off for a location).
        // spillway has no switch to turn ranges off.
    ];
    run(stack.port(), &t1, &rows);
}

/// nginx's range test file: "X000XXXXXX" .. "X099XXXXXX", 1000 bytes, so every 10-byte slice
/// says where it came from.
fn nginx_t1_html() -> Vec<u8> {
    (0..100)
        .flat_map(|i| format!("X{i:03}XXXXXX").into_bytes())
        .collect()
}

// ---------------------------------------------------------------------------
// nginx-tests: range_if_range.t
// ---------------------------------------------------------------------------

/// range_if_range.t: 5 requests; 4 ported (2 adapted), 1 dropped.
#[test]
fn nginx_range_if_range_t() {
    let stack = Stack::start();

    // t1.html: If-Range against the file's own Last-Modified.
    let t1 = put(&stack, "t1.html", nginx_t1_html());
    let (_, last) = validators(stack.port(), &t1);
    let rows = vec![
        // Not a date nor an entity-tag: it cannot match, so the Range is dropped.
        get(
            "if-range wrong",
            &[("Range", "bytes=0-9"), ("If-Range", "wrong")],
            Expect::Whole,
        ),
        get(
            "if-range",
            &[("Range", "bytes=0-9"), ("If-Range", &last)],
            Expect::Range(0, 9),
        ),
    ];
    run(stack.port(), &t1, &rows);

    // Dropped: "if-range notime" (t2.html: `add_header Last-Modified ""` removes the header).
    // spillway always sends Last-Modified and has no way to hide it.

    // Adapted: t3.html overrides Last-Modified with `add_header` to Mon, 28 Sep 1970 06:00:00
    // GMT. spillway's Last-Modified is the file's mtime, so the mtime is set to that instant;
    // what nginx checks (If-Range compares with the Last-Modified actually sent) is the same.
    const T3_DATE: &str = "Mon, 28 Sep 1970 06:00:00 GMT";
    let t3 = put(&stack, "t3.html", nginx_t1_html());
    set_mtime(&stack.www("static").join("t3.html"), http_date(T3_DATE));
    let rows = vec![
        get(
            "if-range time wrong",
            &[("Range", "bytes=0-9"), ("If-Range", "wrong")],
            Expect::Whole,
        ),
        get(
            "if-range time",
            &[("Range", "bytes=0-9"), ("If-Range", T3_DATE)],
            Expect::Range(0, 9),
        ),
    ];
    let responses = run(stack.port(), &t3, &rows);
    let if_range_time_wrong = responses[0].as_ref().expect("checked by run");
    assert_eq!(
        if_range_time_wrong.header("last-modified"),
        Some(T3_DATE),
        "if-range time wrong - last modified: the mtime is what is sent"
    );
}

// ---------------------------------------------------------------------------
// nginx-tests: not_modified.t
// ---------------------------------------------------------------------------

/// not_modified.t: 15 requests, all ported (2 adapted).
///
/// nginx runs these with `if_modified_since before` (304 when the file is not newer than the
/// date), which is RFC 9110 §13.1.3 and spillway's only behaviour; nginx's default, `exact`,
/// has no counterpart. nginx sends HTTP/1.0 requests here; the semantics are the same over the
/// HTTP/1.1 keep-alive connection used below.
#[test]
fn nginx_not_modified_t() {
    let stack = Stack::start();
    // nginx's file `t` is empty too. Its mtime is "now" there; here it is pinned to a past
    // instant so the future dates below stay in the future whatever the clock says.
    let t = put(&stack, "t", Vec::new());
    set_mtime(&stack.www("static").join("t"), at(1_700_000_000));
    let (etag, _) = validators(stack.port(), &t);

    let weak = format!("W/{etag}");
    let inm_list = format!("\"foo\", \"bar\", {etag} , \"baz\"");
    let im_list = format!("\"foo\", \"bar\", \t{etag} , \"baz\"");
    let rows = vec![
        // Dates past 32-bit time_t boundaries must parse, not wrap into the past.
        get(
            "0x7F000000",
            &[("If-Modified-Since", "Wed, 08 Jul 2037 22:53:52 GMT")],
            Expect::NotModified,
        ),
        get(
            "0x7FFFFFFF",
            &[("If-Modified-Since", "Tue, 19 Jan 2038 03:14:07 GMT")],
            Expect::NotModified,
        ),
        // Adapted, the next two: nginx expects 200 only where time_t is 32 bits (and skips them
        // otherwise). spillway's times are 64-bit, so these dates are simply in the future.
        get(
            "0x7FFFFFFF + 1 (adapted: 64-bit time)",
            &[("If-Modified-Since", "Tue, 19 Jan 2038 03:14:08 GMT")],
            Expect::NotModified,
        ),
        get(
            "0x17FFFFFFF (adapted: 64-bit time)",
            &[("If-Modified-Since", "Fri, 25 Feb 2174 09:42:23 GMT")],
            Expect::NotModified,
        ),
        get(
            "if-none-match",
            &[("If-None-Match", &etag)],
            Expect::NotModified,
        ),
        get(
            "if-none-match fail",
            &[("If-None-Match", "\"foo\"")],
            Expect::Whole,
        ),
        get(
            "if-none-match with complex list",
            &[("If-None-Match", &inm_list)],
            Expect::NotModified,
        ),
        get(
            "if-none-match all",
            &[("If-None-Match", "*")],
            Expect::NotModified,
        ),
        // If-None-Match uses the weak comparison (RFC 9110 §13.1.2).
        get(
            "if-none-match weak",
            &[("If-None-Match", &weak)],
            Expect::NotModified,
        ),
        get("if-match", &[("If-Match", &etag)], Expect::Whole),
        get(
            "if-match fail",
            &[("If-Match", "\"foo\"")],
            Expect::PreconditionFailed,
        ),
        get(
            "if-match with complex list",
            &[("If-Match", &im_list)],
            Expect::Whole,
        ),
        get("if-match all", &[("If-Match", "*")], Expect::Whole),
        // If-Match uses the strong comparison (RFC 9110 §13.1.1).
        get(
            "if-match weak fail",
            &[("If-Match", &weak)],
            Expect::PreconditionFailed,
        ),
    ];
    run(stack.port(), &t, &rows);

    // "A server MUST ignore precondition if its response wouldn't be 2xx or 412": /static has no
    // bucket, so a missing file is a 404 whatever the preconditions say.
    let resp = request(
        stack.port(),
        "GET",
        "/static/nx",
        &[("If-Match", "\"foo\"")],
        b"",
    );
    assert_eq!(resp.status, 404, "if-match ignored with 404");
}

// ---------------------------------------------------------------------------
// RFC 9110: If-Range (§13.1.5)
// ---------------------------------------------------------------------------

#[test]
fn rfc_if_range() {
    let stack = Stack::start();
    let file = put(&stack, "page.html", nginx_t1_html());
    set_mtime(&stack.www("static").join("page.html"), at(1_600_000_000));
    let (etag, last) = validators(stack.port(), &file);
    let weak = format!("W/{etag}");
    let earlier = httpdate::fmt_http_date(at(1_600_000_000 - 1));
    let later = httpdate::fmt_http_date(at(1_600_000_000 + 1));

    let rows = vec![
        get(
            "strong ETag matches: the range is served",
            &[("Range", "bytes=0-9"), ("If-Range", &etag)],
            Expect::Range(0, 9),
        ),
        // §13.1.5: the entity-tag must match strongly, so a weak tag never does, even ours.
        get(
            "weak ETag never matches: whole file",
            &[("Range", "bytes=0-9"), ("If-Range", &weak)],
            Expect::Whole,
        ),
        get(
            "another ETag: whole file",
            &[("Range", "bytes=0-9"), ("If-Range", "\"other\"")],
            Expect::Whole,
        ),
        get(
            "the exact Last-Modified date matches",
            &[("Range", "bytes=0-9"), ("If-Range", &last)],
            Expect::Range(0, 9),
        ),
        // §13.1.5: a date must match exactly; "not modified since" is not enough here, because
        // the client's partial copy is of one exact version.
        get(
            "a later date does not match",
            &[("Range", "bytes=0-9"), ("If-Range", &later)],
            Expect::Whole,
        ),
        get(
            "an earlier date does not match",
            &[("Range", "bytes=0-9"), ("If-Range", &earlier)],
            Expect::Whole,
        ),
        // §13.1.5: If-Range without Range MUST be ignored.
        get(
            "If-Range alone is ignored",
            &[("If-Range", &etag)],
            Expect::Whole,
        ),
        // When If-Range matches, the Range applies in full, unsatisfiable included...
        get(
            "matching If-Range with an unsatisfiable range: 416",
            &[("Range", "bytes=5000-"), ("If-Range", &etag)],
            Expect::Unsatisfiable,
        ),
        // ...and when it does not, the Range is gone: the client gets the new version, not a 416.
        get(
            "stale If-Range with an unsatisfiable range: whole file",
            &[("Range", "bytes=5000-"), ("If-Range", "\"other\"")],
            Expect::Whole,
        ),
        get(
            "matching If-Range with several ranges: multipart",
            &[("Range", "bytes=0-9,20-29"), ("If-Range", &etag)],
            Expect::Parts(vec![(0, 9), (20, 29)]),
        ),
        head(
            "HEAD: Range ignored even with a matching If-Range",
            &[("Range", "bytes=0-9"), ("If-Range", &etag)],
            Expect::Whole,
        ),
    ];
    run(stack.port(), &file, &rows);
}

// ---------------------------------------------------------------------------
// RFC 9110: precondition order (§13.2.2)
// ---------------------------------------------------------------------------

/// §13.2.2 evaluates If-Match (or If-Unmodified-Since), then If-None-Match (or
/// If-Modified-Since), then If-Range/Range. So 412 beats 304, and both beat any range outcome.
#[test]
fn rfc_precondition_precedence() {
    let stack = Stack::start();
    let file = put(&stack, "doc.html", nginx_t1_html());
    const MTIME: u64 = 1_650_000_000;
    set_mtime(&stack.www("static").join("doc.html"), at(MTIME));
    let (etag, last) = validators(stack.port(), &file);
    let earlier = httpdate::fmt_http_date(at(MTIME - 1));
    let later = httpdate::fmt_http_date(at(MTIME + 1));

    let rows = vec![
        // 412 before 304.
        get(
            "failed If-Match beats a matching If-None-Match",
            &[("If-Match", "\"other\""), ("If-None-Match", &etag)],
            Expect::PreconditionFailed,
        ),
        get(
            "failed If-Unmodified-Since beats a matching If-None-Match",
            &[("If-Unmodified-Since", &earlier), ("If-None-Match", &etag)],
            Expect::PreconditionFailed,
        ),
        get(
            "failed If-Match beats a matching If-Modified-Since",
            &[("If-Match", "\"other\""), ("If-Modified-Since", &last)],
            Expect::PreconditionFailed,
        ),
        // 412 before any range outcome.
        get(
            "failed If-Match beats Range",
            &[("If-Match", "\"other\""), ("Range", "bytes=0-9")],
            Expect::PreconditionFailed,
        ),
        get(
            "failed If-Match beats an unsatisfiable Range (412, not 416)",
            &[("If-Match", "\"other\""), ("Range", "bytes=5000-")],
            Expect::PreconditionFailed,
        ),
        // 304 before any range outcome.
        get(
            "matching If-None-Match beats Range",
            &[("If-None-Match", &etag), ("Range", "bytes=0-9")],
            Expect::NotModified,
        ),
        get(
            "matching If-None-Match beats an unsatisfiable Range (304, not 416)",
            &[("If-None-Match", &etag), ("Range", "bytes=5000-")],
            Expect::NotModified,
        ),
        get(
            "matching If-Modified-Since beats Range",
            &[("If-Modified-Since", &last), ("Range", "bytes=0-9")],
            Expect::NotModified,
        ),
        get(
            "matching If-None-Match beats a matching If-Range",
            &[
                ("If-None-Match", &etag),
                ("Range", "bytes=0-9"),
                ("If-Range", &etag),
            ],
            Expect::NotModified,
        ),
        // Passing preconditions fall through to the next step.
        get(
            "passing If-Match, then Range",
            &[("If-Match", &etag), ("Range", "bytes=0-9")],
            Expect::Range(0, 9),
        ),
        get(
            "passing If-Match, then matching If-None-Match: 304",
            &[("If-Match", &etag), ("If-None-Match", &etag)],
            Expect::NotModified,
        ),
        get(
            "all steps pass: If-Match, If-None-Match, If-Range, Range",
            &[
                ("If-Match", &etag),
                ("If-None-Match", "\"other\""),
                ("If-Range", &etag),
                ("Range", "bytes=10-19"),
            ],
            Expect::Range(10, 19),
        ),
        // Step 2 only runs without If-Match; step 4 only without If-None-Match.
        get(
            "If-Unmodified-Since is ignored when If-Match is present",
            &[("If-Match", &etag), ("If-Unmodified-Since", &earlier)],
            Expect::Whole,
        ),
        get(
            "If-Modified-Since is ignored when If-None-Match is present",
            &[
                ("If-None-Match", "\"other\""),
                ("If-Modified-Since", &later),
            ],
            Expect::Whole,
        ),
        // The date comparisons themselves, at one-second resolution.
        get(
            "If-Unmodified-Since before the mtime: 412",
            &[("If-Unmodified-Since", &earlier)],
            Expect::PreconditionFailed,
        ),
        get(
            "If-Unmodified-Since at the mtime: passes",
            &[("If-Unmodified-Since", &last)],
            Expect::Whole,
        ),
        get(
            "If-Unmodified-Since after the mtime: passes",
            &[("If-Unmodified-Since", &later)],
            Expect::Whole,
        ),
        get(
            "If-Unmodified-Since that is not a date is ignored",
            &[("If-Unmodified-Since", "yesterday")],
            Expect::Whole,
        ),
        get(
            "If-Modified-Since before the mtime: 200",
            &[("If-Modified-Since", &earlier)],
            Expect::Whole,
        ),
        get(
            "If-Modified-Since at the mtime: 304",
            &[("If-Modified-Since", &last)],
            Expect::NotModified,
        ),
        get(
            "If-Modified-Since that is not a date is ignored",
            &[("If-Modified-Since", "yesterday")],
            Expect::Whole,
        ),
        head(
            "HEAD gets 304 like GET",
            &[("If-None-Match", &etag)],
            Expect::NotModified,
        ),
        head(
            "HEAD gets 412 like GET",
            &[("If-Match", "\"other\"")],
            Expect::PreconditionFailed,
        ),
        // If-None-Match and If-Match are lists (#entity-tag), so a client or intermediary may
        // send them as several field lines; RFC 9110 §5.3 makes that the same as one
        // comma-separated line.
        get(
            "If-None-Match split over two field lines still matches",
            &[("If-None-Match", "\"other\""), ("If-None-Match", &etag)],
            Expect::NotModified,
        ),
        get(
            "If-Match split over two field lines still matches",
            &[("If-Match", "\"other\""), ("If-Match", &etag)],
            Expect::Whole,
        ),
    ];
    run(stack.port(), &file, &rows);

    // Preconditions are about the selected representation; a miss has none to compare with.
    let resp = request(
        stack.port(),
        "GET",
        "/uploads/not-here.txt",
        &[("If-Match", "\"other\"")],
        b"",
    );
    assert_eq!(resp.status, 302, "a miss redirects whatever If-Match says");
}

// ---------------------------------------------------------------------------
// RFC 9110: ranges (§14)
// ---------------------------------------------------------------------------

#[test]
fn rfc_ranges() {
    let stack = Stack::start();
    // Binary content that looks like multipart syntax (CRLFs, "--"), so the multipart check
    // proves parts are framed by the boundary and not by guessing at the content.
    let mut content = b"\r\n--\r\n\r\n".repeat(8);
    content.extend((0..=255u8).cycle().take(1000 - content.len()));
    let file = put(&stack, "blob.bin", content);

    let rows = vec![
        // §14.1.2: a suffix-range of length 0 is never satisfiable.
        get("bytes=-0", &[("Range", "bytes=-0")], Expect::Unsatisfiable),
        get(
            "first-pos at the length",
            &[("Range", "bytes=1000-")],
            Expect::Unsatisfiable,
        ),
        get(
            "several ranges, none satisfiable",
            &[("Range", "bytes=1000-,2000-2999,-0")],
            Expect::Unsatisfiable,
        ),
        // One satisfiable range is enough; the unsatisfiable one is dropped, leaving a
        // single-part 206 rather than a multipart one.
        get(
            "-0 next to a satisfiable range",
            &[("Range", "bytes=-0,0-9")],
            Expect::Range(0, 9),
        ),
        get(
            "the first byte",
            &[("Range", "bytes=0-0")],
            Expect::Range(0, 0),
        ),
        get(
            "the last byte, by position",
            &[("Range", "bytes=999-")],
            Expect::Range(999, 999),
        ),
        get(
            "the last byte, by suffix",
            &[("Range", "bytes=-1")],
            Expect::Range(999, 999),
        ),
        // §14.1.2: a suffix longer than the representation means all of it, still as a 206.
        get(
            "a suffix longer than the file",
            &[("Range", "bytes=-5000")],
            Expect::Range(0, 999),
        ),
        get(
            "the whole file as a range",
            &[("Range", "bytes=0-999")],
            Expect::Range(0, 999),
        ),
        // §14.1: range units are case-insensitive.
        get(
            "unit in capitals",
            &[("Range", "BYTES=0-9")],
            Expect::Range(0, 9),
        ),
        // §14.2: a range unit the server does not understand MUST be ignored.
        get("unknown unit", &[("Range", "items=0-9")], Expect::Whole),
        // §14.1.1: last-pos below first-pos makes the range-spec invalid; invalid is ignored.
        get(
            "last before first",
            &[("Range", "bytes=9-0")],
            Expect::Whole,
        ),
        get("empty range set", &[("Range", "bytes=")], Expect::Whole),
        get("no unit", &[("Range", "0-9")], Expect::Whole),
        get("a sign", &[("Range", "bytes=+1-2")], Expect::Whole),
        get(
            "a position that overflows 64 bits",
            &[("Range", "bytes=0-99999999999999999999999")],
            Expect::Whole,
        ),
        // §5.6.1: recipients accept empty list elements.
        get(
            "empty list element",
            &[("Range", "bytes=0-1,,5-6")],
            Expect::Parts(vec![(0, 1), (5, 6)]),
        ),
        // Multipart: parts in the order asked for, each with its own Content-Range.
        get(
            "adjacent ranges are not overlapping",
            &[("Range", "bytes=0-9,10-19")],
            Expect::Parts(vec![(0, 9), (10, 19)]),
        ),
        get(
            "descending order is kept",
            &[("Range", "bytes=500-999,0-9")],
            Expect::Parts(vec![(500, 999), (0, 9)]),
        ),
        get(
            "ranges summing to exactly the length",
            &[("Range", "bytes=0-499,500-999")],
            Expect::Parts(vec![(0, 499), (500, 999)]),
        ),
        // Overlaps and totals past the length are how a small request makes a server send a
        // huge response (the Apache "Killer" class): spillway sends the whole file once.
        get(
            "overlapping ranges: whole file",
            &[("Range", "bytes=0-9,5-14")],
            Expect::Whole,
        ),
        get(
            "a suffix overlapping a range: whole file",
            &[("Range", "bytes=0-499,500-999,-1")],
            Expect::Whole,
        ),
        get(
            "16 ranges: multipart",
            &[("Range", &range_header(&spaced(16)))],
            Expect::Parts(spaced(16)),
        ),
        get(
            "17 ranges: whole file",
            &[("Range", &range_header(&spaced(17)))],
            Expect::Whole,
        ),
        // The limit counts range-specs as sent, satisfiable or not. (nginx's max_ranges counts
        // only satisfiable ones and would send 16 parts here.)
        get(
            "16 ranges and an unsatisfiable 17th: whole file",
            &[("Range", &format!("{},5000-", range_header(&spaced(16))))],
            Expect::Whole,
        ),
        // §14.2: Range is defined for GET only; HEAD describes the 200 a plain GET would get.
        head("HEAD with Range", &[("Range", "bytes=0-9")], Expect::Whole),
        head(
            "HEAD with several ranges",
            &[("Range", "bytes=0-9,20-29")],
            Expect::Whole,
        ),
        head(
            "HEAD with an unsatisfiable range (200, not 416)",
            &[("Range", "bytes=-0")],
            Expect::Whole,
        ),
    ];
    run(stack.port(), &file, &rows);

    // Ranges longer than the 128 KiB chunks a file is read in, starting and ending mid-chunk:
    // every part must still be exactly its bytes, with the next part header right after.
    let big: Vec<u8> = (0..300_007u32).map(|i| (i % 251) as u8).collect();
    let big = put(&stack, "big.bin", big);
    let rows = vec![
        get(
            "one range across chunks",
            &[("Range", "bytes=100000-299999")],
            Expect::Range(100_000, 299_999),
        ),
        get(
            "parts across chunks",
            &[("Range", "bytes=1-140000,150000-160000,200000-")],
            Expect::Parts(vec![(1, 140_000), (150_000, 160_000), (200_000, 300_006)]),
        ),
        get(
            "a suffix across chunks",
            &[("Range", "bytes=-150000")],
            Expect::Range(150_007, 300_006),
        ),
    ];
    run(stack.port(), &big, &rows);
}

/// A 0-byte file: every int-range is unsatisfiable (§14.1.2: first-pos must be below the
/// length, and nothing is).
#[test]
fn rfc_ranges_on_an_empty_file() {
    let stack = Stack::start();
    let file = put(&stack, "empty.bin", Vec::new());

    let rows = vec![
        get("no Range: 200, empty body", &[], Expect::Whole),
        get("bytes=0-", &[("Range", "bytes=0-")], Expect::Unsatisfiable),
        get(
            "bytes=0-0",
            &[("Range", "bytes=0-0")],
            Expect::Unsatisfiable,
        ),
        get("bytes=-0", &[("Range", "bytes=-0")], Expect::Unsatisfiable),
        // §14.1.2: "When a selected representation has zero length, the only satisfiable form
        // of range-spec in a GET request is a suffix-range with a non-zero suffix-length", and
        // §15.5.17 keeps 416 for range sets with nothing satisfiable. No Content-Range can
        // describe zero bytes, so the server takes §14.2's leave to ignore Range: a 200.
        get(
            "bytes=-5 is satisfiable on an empty file: 200, not 416",
            &[("Range", "bytes=-5")],
            Expect::Whole,
        ),
        head("HEAD with Range", &[("Range", "bytes=0-")], Expect::Whole),
    ];
    run(stack.port(), &file, &rows);
}

// ---------------------------------------------------------------------------
// Table machinery
// ---------------------------------------------------------------------------

/// A file under `/static` and what a correct response for it contains.
struct Served {
    target: String,
    content: Vec<u8>,
    content_type: &'static str,
}

/// Creates `/static/<name>`; its Content-Type follows from the extension.
fn put(stack: &Stack, name: &str, content: Vec<u8>) -> Served {
    stack.put_local("static", name, &content);
    let content_type = match Path::new(name).extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        _ => "application/octet-stream",
    };
    Served {
        target: format!("/static/{name}"),
        content,
        content_type,
    }
}

/// One request and the response it must get.
struct Row {
    what: &'static str,
    method: &'static str,
    headers: Vec<(&'static str, String)>,
    expect: Expect,
}

fn get(what: &'static str, headers: &[(&'static str, &str)], expect: Expect) -> Row {
    row("GET", what, headers, expect)
}

fn head(what: &'static str, headers: &[(&'static str, &str)], expect: Expect) -> Row {
    row("HEAD", what, headers, expect)
}

fn row(
    method: &'static str,
    what: &'static str,
    headers: &[(&'static str, &str)],
    expect: Expect,
) -> Row {
    let headers = headers.iter().map(|&(n, v)| (n, v.to_owned())).collect();
    Row {
        what,
        method,
        headers,
        expect,
    }
}

/// The outcome a row expects. Ranges are inclusive, as in Content-Range.
enum Expect {
    /// 200 with the whole file (for HEAD: its headers, and no body).
    Whole,
    /// 206 with one range.
    Range(u64, u64),
    /// 206 `multipart/byteranges` with these parts, in this order.
    Parts(Vec<(u64, u64)>),
    /// 416 with `Content-Range: bytes */<length>`.
    Unsatisfiable,
    /// 304 with the validators and no body.
    NotModified,
    /// 412 without the file.
    PreconditionFailed,
}

/// Runs `rows` in order over one keep-alive connection, then checks the connection is still in
/// step. A failing row does not hide the rows after it: its panic message is printed as usual,
/// the connection is replaced (the failure may have left it out of step), the table goes on,
/// and the test fails at the end naming every failed row. Returns the responses, `None` for
/// failed rows, for checks beyond what `Expect` covers.
fn run(port: u16, file: &Served, rows: &[Row]) -> Vec<Option<Response>> {
    let mut conn = Conn::open(port);
    let mut failed = Vec::new();
    let mut responses = Vec::new();
    for row in rows {
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&mut conn, file, row)));
        if outcome.is_err() {
            failed.push(row.what);
            conn = Conn::open(port);
        }
        responses.push(outcome.ok());
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows failed for {} (messages above): {failed:#?}",
        failed.len(),
        rows.len(),
        file.target
    );
    let last = rows.last().map_or("", |r| r.what);
    let resp = conn
        .try_send("GET", &file.target, &[], b"")
        .unwrap_or_else(|e| panic!("a plain GET after {last:?} failed: {e}"));
    assert!(
        resp.status == 200 && resp.body == file.content,
        "a plain GET after {last:?} got {} and {} bytes: the previous response was mis-framed",
        resp.status,
        resp.body.len()
    );
    responses
}

/// Sends one row and checks everything its `Expect` implies.
fn check(conn: &mut Conn, file: &Served, row: &Row) -> Response {
    let headers: Vec<(&str, &str)> = row.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let ctx = format!(
        "{}: {} {} {:?}",
        row.what, row.method, file.target, row.headers
    );
    let resp = conn
        .try_send(row.method, &file.target, &headers, b"")
        .unwrap_or_else(|e| panic!("{ctx}: {e} (a mis-framed previous response garbles this one)"));
    let ctx = format!("{ctx}\n  got {} {:?}", resp.status, resp.headers);
    let len = file.content.len() as u64;
    let is_head = row.method == "HEAD";

    // Every response for a file advertises ranges, whatever its status.
    assert_eq!(resp.header("accept-ranges"), Some("bytes"), "{ctx}");

    match &row.expect {
        Expect::Whole => {
            assert_eq!(resp.status, 200, "{ctx}");
            assert_eq!(resp.header("content-range"), None, "{ctx}");
            assert_eq!(
                resp.header("content-length"),
                Some(len.to_string().as_str()),
                "{ctx}: the whole length (for HEAD too)"
            );
            assert_eq!(
                resp.header("content-type"),
                Some(file.content_type),
                "{ctx}"
            );
            assert!(resp.header("etag").is_some(), "{ctx}: ETag");
            assert!(
                resp.header("last-modified").is_some(),
                "{ctx}: Last-Modified"
            );
            if is_head {
                assert!(resp.body.is_empty(), "{ctx}: HEAD has no body");
            } else {
                assert!(resp.body == file.content, "{ctx}: the whole file");
            }
        }
        &Expect::Range(first, last) => {
            assert_eq!(resp.status, 206, "{ctx}");
            assert_eq!(
                resp.header("content-range"),
                Some(format!("bytes {first}-{last}/{len}").as_str()),
                "{ctx}"
            );
            assert_eq!(
                resp.header("content-length"),
                Some((last - first + 1).to_string().as_str()),
                "{ctx}"
            );
            assert_eq!(
                resp.header("content-type"),
                Some(file.content_type),
                "{ctx}"
            );
            assert!(
                resp.body == file.content[first as usize..=last as usize],
                "{ctx}: body is bytes {first}-{last}, got {:?}",
                resp.text()
            );
        }
        Expect::Parts(ranges) => {
            assert_eq!(resp.status, 206, "{ctx}");
            assert_eq!(
                resp.header("content-range"),
                None,
                "{ctx}: multipart has Content-Range per part only"
            );
            let content_type = resp.header("content-type").unwrap_or_default();
            let boundary = boundary_of(content_type)
                .unwrap_or_else(|| panic!("{ctx}: not multipart/byteranges with a boundary"));
            // RFC 2046 §5.1.1: 1 to 70 characters.
            assert!((1..=70).contains(&boundary.len()), "{ctx}: boundary length");
            let parts = parse_multipart(&resp.body, boundary)
                .unwrap_or_else(|e| panic!("{ctx}: bad multipart body: {e}\n{:?}", resp.text()));
            assert_eq!(parts.len(), ranges.len(), "{ctx}: number of parts");
            for (i, (part, &(first, last))) in parts.iter().zip(ranges).enumerate() {
                assert_eq!(
                    part.header("content-range"),
                    Some(format!("bytes {first}-{last}/{len}").as_str()),
                    "{ctx}: part {i}"
                );
                assert_eq!(
                    part.header("content-type"),
                    Some(file.content_type),
                    "{ctx}: part {i}"
                );
                assert!(
                    part.data == file.content[first as usize..=last as usize],
                    "{ctx}: part {i} is bytes {first}-{last}, got {:?}",
                    String::from_utf8_lossy(&part.data)
                );
            }
        }
        Expect::Unsatisfiable => {
            assert_eq!(resp.status, 416, "{ctx}");
            assert_eq!(
                resp.header("content-range"),
                Some(format!("bytes */{len}").as_str()),
                "{ctx}: the current length, for the client's next try"
            );
            assert!(resp.body.is_empty(), "{ctx}: no body");
        }
        Expect::NotModified => {
            assert_eq!(resp.status, 304, "{ctx}");
            assert!(resp.header("etag").is_some(), "{ctx}: 304 keeps the ETag");
            assert!(resp.header("last-modified").is_some(), "{ctx}");
            assert_eq!(resp.header("content-range"), None, "{ctx}");
        }
        Expect::PreconditionFailed => {
            assert_eq!(resp.status, 412, "{ctx}");
            assert_eq!(resp.header("content-range"), None, "{ctx}");
            assert!(resp.body.is_empty(), "{ctx}: not the file");
        }
    }
    resp
}

/// The ETag and Last-Modified a plain GET reports.
fn validators(port: u16, file: &Served) -> (String, String) {
    let resp = support::get(port, &file.target);
    assert_eq!(resp.status, 200, "GET {}", file.target);
    let etag = resp.header("etag").expect("ETag").to_owned();
    let last_modified = resp.header("last-modified").expect("Last-Modified");
    (etag, last_modified.to_owned())
}

/// `n` disjoint 10-byte ranges with gaps between them: 0-9, 20-29, ...
fn spaced(n: u64) -> Vec<(u64, u64)> {
    (0..n).map(|i| (i * 20, i * 20 + 9)).collect()
}

fn range_header(ranges: &[(u64, u64)]) -> String {
    let specs: Vec<String> = ranges.iter().map(|(a, b)| format!("{a}-{b}")).collect();
    format!("bytes={}", specs.join(","))
}

fn at(unix_seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_seconds)
}

fn http_date(text: &str) -> SystemTime {
    httpdate::parse_http_date(text).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn set_mtime(path: &Path, time: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(time))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", path.display()));
}

// ---------------------------------------------------------------------------
// multipart/byteranges (RFC 9110 §14.6, RFC 2046 §5.1)
// ---------------------------------------------------------------------------

/// The `boundary` parameter of a `multipart/byteranges` Content-Type, unquoted.
fn boundary_of(content_type: &str) -> Option<&str> {
    let mut params = content_type.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("multipart/byteranges") {
        return None;
    }
    params
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("boundary"))
        .map(|(_, value)| value.trim().trim_matches('"'))
}

struct Part {
    headers: Vec<(String, String)>,
    data: Vec<u8>,
}

impl Part {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a multipart body into parts, strictly: every part must be closed by a delimiter and
/// the body must end with the close delimiter and at most a CRLF. RFC 2046 would allow an
/// epilogue, but spillway sends none and computes Content-Length apart from writing the body, so
/// bytes there (or a missing close delimiter) mean the two disagree.
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Vec<Part>, String> {
    // The CRLF before each boundary line belongs to the delimiter (RFC 2046 §5.1.1). The first
    // boundary may open the body without one, so give it one; a CRLF already there is preamble.
    let delimiter = format!("\r\n--{boundary}").into_bytes();
    let body = [b"\r\n".as_slice(), body].concat();
    let start = find(&body, &delimiter).ok_or("no boundary")?;
    let mut rest = &body[start + delimiter.len()..];
    let mut parts = Vec::new();
    loop {
        if let Some(epilogue) = rest.strip_prefix(b"--") {
            if !epilogue.is_empty() && epilogue != b"\r\n" {
                return Err(format!(
                    "{} bytes after the close delimiter",
                    epilogue.len()
                ));
            }
            return Ok(parts);
        }
        let after_line = rest
            .strip_prefix(b"\r\n")
            .ok_or("boundary line not ended by CRLF")?;
        let end = find(after_line, &delimiter).ok_or("part not closed by a delimiter")?;
        let part = &after_line[..end];
        let (head, data) = if let Some(data) = part.strip_prefix(b"\r\n") {
            (&[][..], data)
        } else {
            let blank = find(part, b"\r\n\r\n").ok_or("part headers not ended by a blank line")?;
            (&part[..blank], &part[blank + 4..])
        };
        let head = std::str::from_utf8(head).map_err(|e| format!("part headers: {e}"))?;
        let headers = head
            .split("\r\n")
            .filter(|l| !l.is_empty())
            .map(|line| {
                line.split_once(':')
                    .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
                    .ok_or_else(|| format!("bad part header line {line:?}"))
            })
            .collect::<Result<_, _>>()?;
        parts.push(Part {
            headers,
            data: data.to_vec(),
        });
        rest = &after_line[end + delimiter.len()..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
