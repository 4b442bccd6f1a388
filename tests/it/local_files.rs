//! Files under a route's root are served directly, with correct HTTP.

use crate::support;

use support::{get, patterned, read_rest, request, start_download, Conn, Stack, StackOptions};

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

/// The open-file cache's default window (`open_file_cache.valid`).
const CACHE_VALID: std::time::Duration = std::time::Duration::from_secs(1);

#[test]
fn a_file_appearing_is_served_once_the_remembered_miss_expires() {
    let stack = Stack::start();
    assert_eq!(
        get(stack.port(), "/uploads/late.txt").status,
        302,
        "not there yet: redirect"
    );
    stack.put_local("uploads", "late.txt", b"now local");
    assert_eq!(
        get(stack.port(), "/uploads/late.txt").status,
        302,
        "the miss is remembered for a moment"
    );
    // The window is what is tested: it has passed after this long, whatever the machine.
    std::thread::sleep(CACHE_VALID);
    let resp = get(stack.port(), "/uploads/late.txt");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"now local"[..]),
        "no stale cache after the window"
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
fn a_directory_without_an_index_is_403_never_a_redirect_and_a_missing_static_file_is_404() {
    let stack = Stack::start();
    std::fs::create_dir_all(stack.www("uploads").join("albums")).unwrap();
    // A directory is not an object: never redirected to a key like `uploads/albums/`, as
    // nginx with `autoindex off` answers 403.
    for path in [
        "/uploads/albums",
        "/uploads/albums/",
        "/uploads",
        "/uploads/",
    ] {
        let resp = get(stack.port(), path);
        assert_eq!(resp.status, 403, "{path}");
        assert_eq!(resp.header("location"), None, "{path}");
    }
    let config = stack.proxy.config_path().display().to_string();
    let explained = crate::support::run_cli(&["explain", "--config", &config, "/uploads/albums/"]);
    let text = String::from_utf8_lossy(&explained.stdout);
    assert!(
        text.lines()
            .any(|l| l.starts_with("file ") && l.ends_with("albums/ (directory, no index)")),
        "{text}"
    );
    assert!(
        text.contains(
            "reason        a directory without an index file (directories are not listed)\n"
        ),
        "{text}"
    );
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

const SITE: &str = r#"  - prefix: /site
    root: www/site
    index: [index.html, index.htm]
  - prefix: /assets
    root: www/assets
    precompressed: [br, gzip]
    cache_control: "public, max-age=3600"
"#;

fn site_stack() -> Stack {
    Stack::start_with(StackOptions {
        extra_routes: SITE,
        extra_roots: &["site", "assets"],
        ..StackOptions::default()
    })
}

#[test]
fn directories_serve_their_index_after_adding_the_slash() {
    let stack = site_stack();
    stack.put_local("site", "index.html", b"<h1>home</h1>");
    stack.put_local("site", "docs/index.htm", b"<h1>docs</h1>");
    std::fs::create_dir_all(stack.www("site").join("empty")).unwrap();

    let resp = request(
        stack.port(),
        "GET",
        "/site/docs?lang=en",
        &[("Host", "evil.example")],
        b"",
    );
    assert_eq!(resp.status, 301);
    assert_eq!(
        resp.header("location"),
        Some("/site/docs/?lang=en"),
        "relative, from the request path"
    );
    assert_eq!(resp.header("content-length"), Some("0"));
    let resp = get(stack.port(), "/site");
    assert_eq!(
        (resp.status, resp.header("location")),
        (301, Some("/site/"))
    );

    let resp = get(stack.port(), "/site/docs/");
    assert_eq!(
        (resp.status, resp.body.as_slice()),
        (200, &b"<h1>docs</h1>"[..]),
        "second index name"
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let resp = get(stack.port(), "/site/");
    assert_eq!(resp.body, b"<h1>home</h1>");
    assert_eq!(
        get(stack.port(), "/site/empty/").status,
        403,
        "no index, no listing: 403"
    );
    assert_eq!(
        get(stack.port(), "/site/empty").status,
        403,
        "no index: no slash redirect either"
    );
}

#[test]
fn precompressed_variants_are_served_to_clients_that_accept_them() {
    let stack = site_stack();
    stack.put_local("assets", "app.js", b"console.log('plain')");
    stack.put_local("assets", "app.js.gz", b"GZIP-BYTES");
    stack.put_local("assets", "app.js.br", b"BROTLI-BYTES");
    stack.put_local("assets", "only-gz.css", b"plain css");
    stack.put_local("assets", "only-gz.css.gz", b"GZ-CSS");

    let fetch = |accept: &str, path: &str| {
        let headers: Vec<(&str, &str)> = if accept.is_empty() {
            vec![]
        } else {
            vec![("Accept-Encoding", accept)]
        };
        request(stack.port(), "GET", path, &headers, b"")
    };
    let cases = [
        (
            "gzip, deflate, br",
            "/assets/app.js",
            "BROTLI-BYTES",
            Some("br"),
        ),
        ("gzip", "/assets/app.js", "GZIP-BYTES", Some("gzip")),
        ("br;q=0, gzip", "/assets/app.js", "GZIP-BYTES", Some("gzip")),
        ("", "/assets/app.js", "console.log('plain')", None),
        ("identity", "/assets/app.js", "console.log('plain')", None),
        ("br, gzip", "/assets/only-gz.css", "GZ-CSS", Some("gzip")),
    ];
    let mut etags = std::collections::HashSet::new();
    for (accept, path, body, encoding) in cases {
        let resp = fetch(accept, path);
        assert_eq!(resp.status, 200, "{accept:?} {path}");
        assert_eq!(resp.text(), body, "{accept:?} {path}");
        assert_eq!(
            resp.header("content-encoding"),
            encoding,
            "{accept:?} {path}"
        );
        assert_eq!(
            resp.header("vary"),
            Some("Accept-Encoding"),
            "always on such routes"
        );
        if path == "/assets/app.js" {
            assert_eq!(
                resp.header("content-type"),
                Some("text/javascript; charset=utf-8"),
                "type of the original"
            );
            etags.insert(resp.header("etag").unwrap().to_owned());
        }
    }
    assert_eq!(etags.len(), 3, "each variant has its own ETag");
    let resp = get(stack.port(), "/assets/app.js.gz");
    assert_eq!(
        (resp.status, resp.header("content-encoding")),
        (200, None),
        "the .gz file itself is plain bytes"
    );
}

#[test]
fn cache_control_is_sent_on_200_206_and_304_only() {
    let stack = site_stack();
    stack.put_local("assets", "logo.svg", b"<svg/>");
    let resp = get(stack.port(), "/assets/logo.svg");
    assert_eq!(resp.header("cache-control"), Some("public, max-age=3600"));
    let etag = resp.header("etag").unwrap().to_owned();
    let resp = request(
        stack.port(),
        "GET",
        "/assets/logo.svg",
        &[("If-None-Match", &etag)],
        b"",
    );
    assert_eq!(
        (resp.status, resp.header("cache-control")),
        (304, Some("public, max-age=3600"))
    );
    let resp = request(
        stack.port(),
        "GET",
        "/assets/logo.svg",
        &[("Range", "bytes=0-1")],
        b"",
    );
    assert_eq!(
        (resp.status, resp.header("cache-control")),
        (206, Some("public, max-age=3600"))
    );
    let resp = get(stack.port(), "/assets/missing.svg");
    assert_eq!((resp.status, resp.header("cache-control")), (404, None));
}

#[test]
fn a_64_mib_file_streams_completely_and_a_middle_range_is_exact() {
    let stack = Stack::start();
    let bytes = patterned(64 << 20);
    stack.put_local("static", "big.bin", &bytes);
    let resp = get(stack.port(), "/static/big.bin");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("67108864"));
    assert!(resp.body == bytes, "byte-exact 64 MiB");

    let (start, end) = (30_000_001usize, 30_500_000usize);
    let range = format!("bytes={start}-{end}");
    let resp = request(
        stack.port(),
        "GET",
        "/static/big.bin",
        &[("Range", &range)],
        b"",
    );
    assert_eq!(resp.status, 206);
    assert_eq!(
        resp.header("content-range"),
        Some(format!("bytes {start}-{end}/67108864").as_str())
    );
    assert!(resp.body == bytes[start..=end], "byte-exact middle range");
}

#[test]
fn a_file_truncated_mid_transfer_ends_the_connection_short() {
    let stack = Stack::start();
    let bytes = patterned(64 << 20);
    let path = stack.put_local("static", "shrinking.bin", &bytes);
    let (stream, length, body) = start_download(stack.port(), "/static/shrinking.bin", 1 << 20);
    assert_eq!(length, bytes.len());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();
    let body = read_rest(stream, body);
    assert!(
        body.len() < length,
        "the response must end short, never padded: {} of {length}",
        body.len()
    );
    assert!(
        body[..] == bytes[..body.len()],
        "what was sent is the file's real bytes"
    );
    let logs = stack.proxy.wait_for_log("truncated");
    let line = logs
        .lines()
        .find(|l| l.contains("/static/shrinking.bin"))
        .unwrap_or_else(|| panic!("no line for the download:\n{logs}"));
    assert!(
        line.contains("status=200") && line.contains("cut_short=true"),
        "the status sent, and that the body was cut short: {line}"
    );
}

#[test]
fn a_client_that_hangs_up_mid_download_is_logged_with_the_status_it_got() {
    let stack = Stack::start();
    stack.put_local("static", "big.bin", &patterned(64 << 20));
    let (stream, _, _) = start_download(stack.port(), "/static/big.bin", 1 << 20);
    drop(stream);
    let logs = stack.proxy.wait_for_log("cut_short=true");
    let line = logs
        .lines()
        .find(|l| l.contains("/static/big.bin"))
        .unwrap_or_else(|| panic!("no line for the download:\n{logs}"));
    assert!(line.contains("outcome=\"served\""), "{line}");
    assert!(line.contains("status=200"), "{line}");
}

#[test]
fn a_file_replaced_or_deleted_mid_transfer_finishes_with_its_original_bytes() {
    let stack = Stack::start();
    let bytes = patterned(32 << 20);
    let path = stack.put_local("static", "release.bin", &bytes);
    let (replaced, _, replaced_head) = start_download(stack.port(), "/static/release.bin", 1 << 20);
    let staging = stack.www("static").join("release.bin.new");
    std::fs::write(&staging, vec![0xEE; 1000]).unwrap();
    std::fs::rename(&staging, &path).unwrap();
    let (deleted, _, deleted_head) = {
        let original = stack.put_local("static", "gone.bin", &bytes);
        let download = start_download(stack.port(), "/static/gone.bin", 1 << 20);
        std::fs::remove_file(original).unwrap();
        download
    };
    assert!(
        read_rest(replaced, replaced_head) == bytes,
        "rename: the bytes it started with"
    );
    assert!(
        read_rest(deleted, deleted_head) == bytes,
        "delete: the bytes it started with"
    );
    std::thread::sleep(CACHE_VALID);
    assert_eq!(
        get(stack.port(), "/static/release.bin").body.len(),
        1000,
        "new requests see the new file once the open-file cache's window has passed"
    );
}

#[test]
fn a_file_partly_in_the_page_cache_is_sent_in_order() {
    // Holes in the page cache mix copied pieces (a non-blocking read stops short at a hole)
    // with `sendfile` pieces; bytes a short read left buffered must not be overtaken.
    let stack = Stack::start();
    let bytes = patterned(8 << 20);
    let path = stack.put_local("static", "holes.bin", &bytes);
    let file = std::fs::File::open(&path).unwrap();
    // Written back, dropped and read again: pages just written (dirty, or still in the
    // kernel's per-CPU batches) are not dropped by `fadvise`.
    file.sync_all().unwrap();
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).unwrap();
    assert_eq!(
        get(stack.port(), "/static/holes.bin").body.len(),
        bytes.len()
    );
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..12 {
        for _ in 0..20 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let offset = (seed % (8 << 20)) & !4095;
            let len = [4096, 16384, 65536, 200_000][(seed >> 40) as usize % 4];
            rustix::fs::fadvise(
                &file,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::DontNeed,
            )
            .unwrap();
        }
        let resp = get(stack.port(), "/static/holes.bin");
        assert_eq!(resp.status, 200);
        assert!(
            resp.body == bytes,
            "round {round}: the body differs from the file"
        );
    }
}
