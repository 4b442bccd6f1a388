//! Malformed or ambiguous paths under a route get 400, never a file, a redirect or a 5xx.

use crate::support;

use support::{get, Stack};

#[test]
fn ambiguous_paths_are_rejected_with_400() {
    let stack = Stack::start();
    stack.put_local("uploads", "a/b.txt", b"inner");
    let cases = [
        ("/uploads/%zz", "invalid escape"),
        ("/uploads/a%2", "truncated escape"),
        ("/uploads/a%00.txt", "NUL"),
        ("/uploads/a%2fb.txt", "encoded slash"),
        ("/uploads/a%2Fb.txt", "encoded slash, upper case"),
        ("/uploads/a\\b.txt", "backslash"),
        ("/uploads/a%5cb.txt", "encoded backslash"),
        ("/uploads/../uploads/a/b.txt", "dot-dot segment"),
        ("/uploads/a/%2e%2e/a/b.txt", "encoded dot-dot"),
        ("/uploads/a/./b.txt", "dot segment"),
        ("/uploads/%c0%ae%c0%ae/x", "overlong UTF-8 dots"),
        ("/uploads/%ff.txt", "not UTF-8"),
    ];
    for (path, why) in cases {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 400, "{why}: {path}");
        assert_eq!(resp.header("location"), None, "{why}: no redirect");
        assert!(!resp.text().contains("inner"), "{why}: no file");
    }
    let logs = stack.proxy.wait_for_log("encoded '/'");
    assert!(
        logs.contains("rejected"),
        "each rejection is logged with its reason"
    );
}

#[test]
fn a_dot_dot_segment_never_reaches_the_upstream_either() {
    // Routing happens on the raw path: `/uploads/..` belongs to /uploads and is rejected there.
    let stack = Stack::start();
    let resp = get(stack.port(), "/uploads/../etc/passwd");
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("x-legacy"), None);
}
