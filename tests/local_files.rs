//! Files under a route's root are served directly, with correct HTTP.

mod support;

use support::{get, request, Conn, Stack};

#[test]
fn a_local_file_is_served_with_validators() {
    let stack = Stack::start();
    stack.put_local("uploads", "docs/readme.txt", b"hello from disk\n");
    let resp = get(stack.port(), "/uploads/docs/readme.txt?v=2");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"hello from disk\n");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.header("content-length"), Some("16"));
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    let etag = resp.header("etag").expect("ETag");
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong ETag: {etag}"
    );
    let last_modified = resp.header("last-modified").expect("Last-Modified");
    assert!(
        httpdate::parse_http_date(last_modified).is_ok(),
        "{last_modified}"
    );
    assert_eq!(resp.header("location"), None);
}

#[test]
fn content_type_follows_the_extension() {
    let stack = Stack::start();
    for (name, want) in [
        ("a.png", "image/png"),
        ("a.html", "text/html; charset=utf-8"),
        ("a.pdf", "application/pdf"),
        ("blob", "application/octet-stream"),
    ] {
        stack.put_local("static", name, b"x");
        assert_eq!(
            get(stack.port(), &format!("/static/{name}")).header("content-type"),
            Some(want),
            "{name}"
        );
    }
}

#[test]
fn head_sends_the_headers_and_no_body() {
    let stack = Stack::start();
    stack.put_local("static", "site.css", b"body{}");
    let mut conn = Conn::open(stack.port());
    let head = conn.send("HEAD", "/static/site.css", &[], b"");
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-length"),
        Some("6"),
        "the length of the body GET would send"
    );
    assert!(head.body.is_empty());
    // If a body had been written after the HEAD response, this response would be garbled.
    let get = conn.send("GET", "/static/site.css", &[], b"");
    assert_eq!(get.status, 200);
    assert_eq!(get.body, b"body{}");
    assert_eq!(get.header("etag"), head.header("etag"));
}

#[test]
fn conditional_requests_get_304() {
    let stack = Stack::start();
    stack.put_local("static", "app.js", b"let x = 1;");
    let first = get(stack.port(), "/static/app.js");
    let etag = first.header("etag").unwrap().to_owned();
    let last_modified = first.header("last-modified").unwrap().to_owned();

    let resp = request(
        stack.port(),
        "GET",
        "/static/app.js",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(resp.status, 304);
    assert!(resp.body.is_empty());
    assert_eq!(
        resp.header("etag"),
        Some(etag.as_str()),
        "304 carries the validators"
    );

    let resp = request(
        stack.port(),
        "GET",
        "/static/app.js",
        &[("If-Modified-Since", &last_modified)],
        b"",
    );
    assert_eq!(resp.status, 304);

    let resp = request(
        stack.port(),
        "GET",
        "/static/app.js",
        &[("If-None-Match", "\"other\"")],
        b"",
    );
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body, b"let x = 1;");

    let resp = request(
        stack.port(),
        "GET",
        "/static/app.js",
        &[("If-Match", "\"other\"")],
        b"",
    );
    assert_eq!(resp.status, 412);
}

#[test]
fn a_file_appearing_is_served_at_once_and_a_miss_redirects() {
    let stack = Stack::start();
    assert_eq!(
        get(stack.port(), "/uploads/late.txt").status,
        302,
        "not there yet: redirect"
    );
    stack.put_local("uploads", "late.txt", b"now local");
    let resp = get(stack.port(), "/uploads/late.txt");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"now local"[..]),
        "no stale cache"
    );
}

#[test]
fn a_large_file_streams_completely() {
    let stack = Stack::start();
    // Several chunks, not a multiple of the chunk size.
    let bytes: Vec<u8> = (0..3_000_017u32).map(|i| (i % 251) as u8).collect();
    stack.put_local("static", "big.bin", &bytes);
    let resp = get(stack.port(), "/static/big.bin");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.body.len(), bytes.len());
    assert!(resp.body == bytes, "byte-exact body");
}

#[test]
fn a_directory_is_a_miss_and_a_missing_static_file_is_404() {
    let stack = Stack::start();
    std::fs::create_dir_all(stack.www("uploads").join("albums")).unwrap();
    let resp = get(stack.port(), "/uploads/albums");
    assert_eq!(resp.status, 302, "a directory is not served");
    let resp = get(stack.port(), "/static/missing.css");
    assert_eq!(resp.status, 404, "no bucket on /static");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn a_fifo_or_a_link_out_of_the_root_is_404_never_a_hang_or_a_leak() {
    let stack = Stack::start();
    let fifo = stack.www("uploads").join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let canary = stack.proxy.spillway_dir().join("canary.txt");
    std::fs::write(&canary, "CANARY-OUTSIDE-ROOT").unwrap();
    std::os::unix::fs::symlink(&canary, stack.www("uploads").join("escape.txt")).unwrap();
    std::os::unix::fs::symlink("../../canary.txt", stack.www("uploads").join("escape2.txt"))
        .unwrap();

    for path in [
        "/uploads/pipe",
        "/uploads/escape.txt",
        "/uploads/escape2.txt",
    ] {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 404, "{path}");
        assert!(!resp.text().contains("CANARY"), "{path} leaked the canary");
        assert_eq!(
            resp.header("location"),
            None,
            "{path} is refused, not redirected"
        );
    }
}
