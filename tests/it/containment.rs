//! Nothing outside a route's root is ever read: a generated traversal corpus, symlinks,
//! dotfiles, special files and permission errors, over real sockets.

use crate::support;

use std::os::unix::fs::{symlink, PermissionsExt};

use support::{get, try_request, Stack, StackOptions};

const CANARY: &str = "CANARY-7f3a-OUTSIDE-THE-ROOT";

/// Encodings of `..` in the style of dotdotpwn: plain, percent-encoded in every case mix,
/// double-encoded, overlong UTF-8, IIS %u, with NUL, and look-alikes that are not `..`.
const DOTS: &[&str] = &[
    "..",
    "%2e%2e",
    "%2E%2E",
    ".%2e",
    "%2e.",
    "%252e%252e",
    "%c0%ae%c0%ae",
    "%e0%80%ae%e0%80%ae",
    "%c0%2e%c0%2e",
    "%u002e%u002e",
    "..%00",
    ".%00.",
    "....",
    "...",
    "..%20",
    "%2e%2e%00",
];

/// Encodings of `/`.
const SLASHES: &[&str] = &[
    "/",
    "//",
    "%2f",
    "%2F",
    "%5c",
    "%5C",
    "\\",
    "%252f",
    "%c0%af",
    "%e0%80%af",
    "%u2215",
    "%c1%9c",
];

/// Where the traversal starts: inside routes, and right next to them.
const PREFIXES: &[&str] = &[
    "/uploads/",
    "/static/",
    "/uploads/avatars/",
    "/uploads",
    "/static",
];

/// Targets: the canary beside the roots, and files every Linux box has.
const TARGETS: &[&str] = &["canary.txt", "etc/passwd"];

fn corpus() -> Vec<String> {
    let mut all = Vec::new();
    for prefix in PREFIXES {
        for dots in DOTS {
            for slash in SLASHES {
                for depth in 1..=6 {
                    let climb = format!("{dots}{slash}").repeat(depth);
                    for target in TARGETS {
                        all.push(format!("{prefix}{climb}{target}"));
                    }
                }
            }
        }
    }
    // Off-by-one prefixes, drive letters, absolute paths, parameters, NUL tricks.
    for extra in [
        "/uploads../canary.txt",
        "/uploads..%2fcanary.txt",
        "/uploads%2f..%2fcanary.txt",
        "/uploads/..;/canary.txt",
        "/uploads/C:\\canary.txt",
        "/uploads/c:/canary.txt",
        "/uploads/C%3a%5ccanary.txt",
        "/uploads//etc/passwd",
        "/uploads/%2fetc%2fpasswd",
        "/uploads/%00/../canary.txt",
        "/uploads/canary.txt%00.png",
        "/static/.%2e/.%2e/canary.txt",
        "/uploads/escape/canary.txt",
        "/uploads/escape-abs",
    ] {
        all.push(extra.to_owned());
    }
    all
}

/// `..` in any Location path segment, literally or percent-encoded.
fn has_dot_dot_segment(location: &str) -> bool {
    let path = location.split('?').next().unwrap_or_default();
    path.split('/').any(|segment| {
        let lower = segment.to_ascii_lowercase();
        lower == ".." || lower.replace("%2e", ".") == ".."
    })
}

#[test]
fn the_traversal_corpus_never_escapes_the_root() {
    let stack = Stack::start();
    let outside = stack.proxy.spillway_dir();
    std::fs::write(outside.join("www/canary.txt"), CANARY).unwrap();
    std::fs::write(outside.join("canary.txt"), CANARY).unwrap();
    // Links out of the root, relative and absolute.
    symlink("../..", stack.www("uploads").join("escape")).unwrap();
    symlink(
        outside.join("canary.txt"),
        stack.www("uploads").join("escape-abs"),
    )
    .unwrap();
    stack.put_local("uploads", "inside.txt", b"inside");

    let corpus = corpus();
    let mut statuses = std::collections::BTreeMap::new();
    let mut dropped = 0;
    for target in &corpus {
        let Ok(resp) = try_request(stack.port(), "GET", target, &[], b"") else {
            // The HTTP parser refused the request line outright (no response): nothing leaked.
            dropped += 1;
            continue;
        };
        *statuses.entry(resp.status).or_insert(0) += 1;
        assert!(resp.status < 500, "{target} → {}", resp.status);
        let body = resp.text();
        assert!(!body.contains(CANARY), "{target} leaked the canary");
        assert!(!body.contains("root:x:0:0"), "{target} leaked /etc/passwd");
        if let Some(location) = resp.header("location") {
            assert!(
                !has_dot_dot_segment(location),
                "{target} → Location {location}"
            );
        }
    }
    eprintln!(
        "traversal corpus: {} payloads, status counts {statuses:?}, {dropped} refused by the HTTP parser",
        corpus.len()
    );
    assert!(
        corpus.len() > 5000,
        "the corpus is generated, not hand-picked"
    );
    // The server is still fine afterwards.
    assert_eq!(get(stack.port(), "/uploads/inside.txt").body, b"inside");
}

#[test]
fn symlinks_inside_the_root_work_and_deny_refuses_them_all() {
    let stack = Stack::start_with(StackOptions {
        extra_routes: "  - prefix: /strict\n    root: www/strict\n    symlinks: deny\n",
        extra_roots: &["strict/real"],
        ..StackOptions::default()
    });
    stack.put_local("uploads", "releases/v2/app.tar", b"v2 bytes");
    symlink("releases/v2", stack.www("uploads").join("current")).unwrap();
    let resp = get(stack.port(), "/uploads/current/app.tar");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"v2 bytes"[..]),
        "deploy-style link"
    );

    stack.put_local("strict", "real/a.txt", b"real");
    symlink("real", stack.www("strict").join("link")).unwrap();
    let absolute = stack
        .www("strict")
        .join("real/a.txt")
        .canonicalize()
        .unwrap();
    symlink(&absolute, stack.www("strict").join("absolute.txt")).unwrap();
    assert_eq!(get(stack.port(), "/strict/real/a.txt").status, 200);
    for path in ["/strict/link/a.txt", "/strict/absolute.txt"] {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 404, "{path}: symlinks: deny");
        assert_eq!(resp.header("location"), None);
    }
}

#[test]
fn an_absolute_link_into_the_root_is_served_and_one_swapped_out_is_refused() {
    // No open-file cache: each request resolves the link again.
    let stack = Stack::start_with(StackOptions {
        extra_top: "open_file_cache:\n  valid: 0s\n".into(),
        ..StackOptions::default()
    });
    let shared = stack.put_local("uploads", "shared/logo.png", b"logo bytes");
    let absolute = shared.canonicalize().unwrap();
    let link = stack.www("uploads").join("logo.png");
    symlink(&absolute, &link).unwrap();
    let resp = get(stack.port(), "/uploads/logo.png");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"logo bytes"[..]),
        "an absolute link that stays inside, as nginx serves it"
    );
    let canary = stack.proxy.spillway_dir().join("canary.txt");
    std::fs::write(&canary, "CANARY-OUTSIDE-ROOT").unwrap();
    std::fs::remove_file(&link).unwrap();
    symlink(&canary, &link).unwrap();
    let resp = get(stack.port(), "/uploads/logo.png");
    assert_eq!(resp.status, 404, "swapped to lead outside");
    assert!(!resp.text().contains("CANARY"));
    assert_eq!(resp.header("location"), None, "refused, not redirected");
    // A directory link out of the root that leads back in: what counts is where the file is.
    symlink(stack.proxy.spillway_dir(), stack.www("uploads").join("up")).unwrap();
    let resp = get(stack.port(), "/uploads/up/www/uploads/shared/logo.png");
    assert_eq!(resp.status, 200, "back inside");
    let resp = get(stack.port(), "/uploads/up/canary.txt");
    assert_eq!(resp.status, 404, "outside");
    assert!(!resp.text().contains("CANARY"));
}

#[test]
fn dotfiles_are_hidden_unless_allowed() {
    let stack = Stack::start_with(StackOptions {
        extra_routes: "  - prefix: /open\n    root: www/open\n    dotfiles: allow\n",
        extra_roots: &["open"],
        ..StackOptions::default()
    });
    stack.put_local("uploads", ".env", b"SECRET=1");
    stack.put_local("uploads", ".git/config", b"[core]");
    stack.put_local("open", ".well-known/security.txt", b"Contact: x");
    for path in [
        "/uploads/.env",
        "/uploads/.git/config",
        "/uploads/.missing",
        "/uploads/a/.hidden/b",
    ] {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 404, "{path}");
        assert_eq!(
            resp.header("location"),
            None,
            "{path} is not redirected either"
        );
        assert!(!resp.text().contains("SECRET"), "{path}");
    }
    let resp = get(stack.port(), "/open/.well-known/security.txt");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"Contact: x"[..])
    );
}

#[test]
fn an_unreadable_file_is_403_with_a_log_line() {
    let stack = Stack::start_with(StackOptions {
        unprivileged: true,
        ..StackOptions::default()
    });
    let path = stack.put_local("uploads", "locked.pdf", b"locked");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o000)).unwrap();
    let dir = stack.www("uploads").join("sealed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("inner.pdf"), b"inner").unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o000)).unwrap();

    for path in ["/uploads/locked.pdf", "/uploads/sealed/inner.pdf"] {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 403, "{path}");
        assert_eq!(
            resp.header("location"),
            None,
            "{path}: a permission error is never a redirect"
        );
    }
    let logs = stack.proxy.wait_for_log("permission denied");
    assert!(logs.contains("/uploads/locked.pdf"), "{logs}");
}
