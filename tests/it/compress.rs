//! Compressing what the upstream answers: gzip, brotli and zstd by `Accept-Encoding`, byte-exact
//! after decoding; answers that must not be touched are passed as they are.

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

use crate::support::{self, Response, Spillway};

/// The page the upstream serves, long and compressible.
fn page() -> Vec<u8> {
    (0..2_000u32)
        .flat_map(|i| format!("<p>paragraph {i} of the legacy page</p>\n").into_bytes())
        .collect()
}

/// An upstream answering by path, keep-alive, one thread per connection.
fn upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local_addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    port
}

fn serve(stream: TcpStream) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    while let Some(head) = support::read_request_head(&mut reader) {
        let path = head.split(' ').nth(1).unwrap_or("").to_owned();
        let body = page();
        let head = |fields: &str, length: usize| {
            format!("HTTP/1.1 200 OK\r\n{fields}Content-Length: {length}\r\n\r\n").into_bytes()
        };
        let reply: Vec<u8> = match path.as_str() {
            "/page.html" => [
                head(
                    "Content-Type: text/html; charset=utf-8\r\nETag: \"v1\"\r\n",
                    body.len(),
                ),
                body,
            ]
            .concat(),
            "/data.json" => {
                let mut chunked = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                for piece in body.chunks(3000) {
                    chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    chunked.extend_from_slice(piece);
                    chunked.extend_from_slice(b"\r\n");
                }
                chunked.extend_from_slice(b"0\r\n\r\n");
                chunked
            }
            "/small.txt" => [head("Content-Type: text/plain\r\n", 5), b"small".to_vec()].concat(),
            "/logo.png" => [head("Content-Type: image/png\r\n", body.len()), body].concat(),
            "/coded" => [
                head(
                    "Content-Type: text/html\r\nContent-Encoding: gzip\r\n",
                    body.len(),
                ),
                body,
            ]
            .concat(),
            "/kept" => [
                head(
                    "Content-Type: text/html\r\nCache-Control: public, no-transform\r\n",
                    body.len(),
                ),
                body,
            ]
            .concat(),
            _ => head("", 0),
        };
        if writer.write_all(&reply).is_err() {
            return;
        }
    }
}

fn proxy() -> Spillway {
    let upstream = upstream();
    Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\ncompress: {{}}\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{upstream}\"\ndefault_upstream: legacy\n"
        )
    })
}

fn decode(encoding: &str, coded: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    let read = match encoding {
        "gzip" => flate2::read::GzDecoder::new(coded).read_to_end(&mut plain),
        "br" => brotli::Decompressor::new(coded, 4096).read_to_end(&mut plain),
        "zstd" => {
            zstd::stream::read::Decoder::new(coded).and_then(|mut d| d.read_to_end(&mut plain))
        }
        other => panic!("no decoder for {other}"),
    };
    read.unwrap_or_else(|e| panic!("{encoding}: {e}"));
    plain
}

fn get(port: u16, path: &str, accept: &str) -> Response {
    support::request(port, "GET", path, &[("Accept-Encoding", accept)], b"")
}

#[test]
fn each_coding_the_client_takes_round_trips_byte_exact() {
    let proxy = proxy();
    // The route's order (zstd, br, gzip) decides among what the client takes.
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("gzip, br, zstd", "zstd"),
        ("gzip, br", "br"),
    ] {
        for path in ["/page.html", "/data.json"] {
            let resp = get(proxy.port, path, accept);
            assert_eq!(resp.status, 200, "{path} {accept}");
            assert_eq!(
                resp.header("content-encoding"),
                Some(coding),
                "{path} {accept}"
            );
            assert_eq!(resp.header("vary"), Some("Accept-Encoding"), "{path}");
            assert_eq!(
                resp.header("content-length"),
                None,
                "{path}: length unknown"
            );
            assert!(
                resp.body.len() < page().len() / 4,
                "{path} {coding}: {}",
                resp.body.len()
            );
            assert_eq!(decode(coding, &resp.body), page(), "{path} {coding}");
        }
    }
    let page_resp = get(proxy.port, "/page.html", "gzip");
    assert_eq!(
        page_resp.header("etag"),
        Some("W/\"v1\""),
        "another representation: weak"
    );
    // HEAD says what GET would.
    let head = support::request(
        proxy.port,
        "HEAD",
        "/page.html",
        &[("Accept-Encoding", "gzip")],
        b"",
    );
    assert_eq!(
        (
            head.header("content-encoding"),
            head.header("content-length")
        ),
        (Some("gzip"), None)
    );
}

#[test]
fn answers_that_must_not_be_compressed_pass_as_they_are() {
    let proxy = proxy();
    let identity = get(proxy.port, "/page.html", "identity");
    assert_eq!(identity.body, page());
    assert_eq!(identity.header("content-encoding"), None);
    assert_eq!(
        identity.header("vary"),
        Some("Accept-Encoding"),
        "another client's copy differs"
    );
    assert_eq!(identity.header("etag"), Some("\"v1\""));
    for path in ["/small.txt", "/logo.png", "/coded", "/kept"] {
        let resp = get(proxy.port, path, "gzip, br, zstd");
        let expected = if path == "/small.txt" {
            b"small".to_vec()
        } else {
            page()
        };
        assert_eq!(resp.body, expected, "{path}");
        let gzip_only_upstream = path == "/coded";
        assert_eq!(
            resp.header("content-encoding"),
            gzip_only_upstream.then_some("gzip"),
            "{path}: the upstream's own coding stands, none is added"
        );
        assert_eq!(resp.header("vary"), None, "{path}");
    }
    let ranged = support::request(
        proxy.port,
        "GET",
        "/page.html",
        &[("Accept-Encoding", "gzip"), ("Range", "bytes=0-9")],
        b"",
    );
    assert_eq!(ranged.header("content-encoding"), None, "a Range was asked");
}

#[test]
fn check_prints_compression_and_refuses_what_it_cannot_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("compress.yaml");
    let check = |compress: &str| {
        support::check_config(
            &config,
            &format!("listen: \"127.0.0.1:0\"\ncompress: {compress}\nupstreams:\n  legacy:\n    address: \"127.0.0.1:1\"\ndefault_upstream: legacy\n"),
        )
    };
    let out = check("{encodings: [br, gzip], min_length: 2KiB, types: [text/*, application/json]}");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("compress br, gzip for text/*, application/json from 2048 bytes\n"),
        "{said}"
    );
    let defaults = check("{}");
    assert!(
        String::from_utf8_lossy(&defaults.stdout).contains(
            "compress zstd, br, gzip for text/*, application/json, application/javascript, application/xml, image/svg+xml from 1024 bytes"
        ),
        "{defaults:?}"
    );
    for (compress, error) in [
        (
            "{encodings: []}",
            "compress.encodings: names no coding: leave `compress:` out to compress nothing at line 2 column 23",
        ),
        (
            "{encodings: [deflate]}",
            "compress.encodings[0]: unknown variant `deflate`, expected one of `br`, `zstd`, `gzip` at line 2 column 24",
        ),
        (
            "{types: [text]}",
            "compress.types[0]: \"text\" is not a media type (text/html) or a family (text/*) at line 2 column 20",
        ),
        (
            "{level: 9}",
            "compress: unknown field `level`, expected one of `encodings`, `min_length`, `types` at line 2 column 12",
        ),
        (
            "{types: []}",
            "compress.types: names no media type: leave `types:` out for the defaults at line 2 column 19",
        ),
        (
            "{types: [\"text/html; charset=utf-8\"]}",
            "compress.types[0]: \"text/html; charset=utf-8\" is not a media type (text/html) or a family (text/*) at line 2 column 20",
        ),
    ] {
        let out = check(compress);
        let whole = format!("spillway: {}: {error}\n", config.display());
        assert_eq!(
            (out.status.success(), String::from_utf8_lossy(&out.stderr)),
            (false, whole.into()),
            "{compress}"
        );
    }
}

#[test]
fn a_route_s_compress_is_refused_with_where_it_belongs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("route.yaml");
    let out = support::check_config(
        &config,
        "listen: \"127.0.0.1:0\"\nroutes:\n  - prefix: /a\n    root: .\n    compress: {}\n",
    );
    let whole = format!(
        "spillway: {}: routes[0].compress: a route answers its own GETs: `compress:` applies to the default upstream's pages, at the top level at line 5 column 15\n",
        config.display()
    );
    assert_eq!(
        (out.status.success(), String::from_utf8_lossy(&out.stderr)),
        (false, whole.into())
    );
}

#[test]
fn pages_to_http2_clients_are_compressed_too() {
    let certs = tempfile::tempdir().expect("tempdir");
    let (ca, files) = support::certificate(certs.path(), "site", &["localhost"]);
    let upstream = upstream();
    let chosen = std::cell::Cell::new(0);
    let proxy = Spillway::start_with(|port| {
        // Afresh at each try, as the plain port is (a retry after a port in use).
        let tls_port = support::free_port();
        chosen.set(tls_port);
        format!(
            "listen:\n  - \"127.0.0.1:{port}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    tls:\n      cert: \"{}\"\n      key: \"{}\"\nthreads: 1\ncompress: {{}}\nupstreams:\n  legacy:\n    address: \"127.0.0.1:{upstream}\"\ndefault_upstream: legacy\n",
            files.cert.display(),
            files.key.display()
        )
    });
    let tls_port = chosen.get();
    let h2 = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).expect("ca"))
        .resolve(
            "localhost",
            std::net::SocketAddr::from(([127, 0, 0, 1], tls_port)),
        )
        .build()
        .expect("client");
    for (path, coding) in [("/page.html", "br"), ("/data.json", "gzip")] {
        let accept = if coding == "br" { "br, gzip" } else { "gzip" };
        let resp = h2
            .get(format!("https://localhost:{tls_port}{path}"))
            .header("Accept-Encoding", accept)
            .send()
            .expect("h2 answer");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2, "{path}");
        let headers = resp.headers().clone();
        assert_eq!(headers["content-encoding"], coding, "{path}");
        assert_eq!(headers["vary"], "Accept-Encoding", "{path}");
        assert!(headers.get("content-length").is_none(), "{path}");
        let coded = resp.bytes().expect("body");
        assert_eq!(decode(coding, &coded), page(), "{path} over h2");
    }
    // The plain listener of the same server, for comparison: the same choice.
    let plain = get(proxy.port, "/page.html", "br, gzip");
    assert_eq!(plain.header("content-encoding"), Some("br"));
}
