//! HTTPS: TLS listeners with certificates made here, HTTP/2 (by ALPN) and HTTP/1.1 through a
//! real client, and SNI choosing between two certificates.

use crate::support;

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::blocking::Client;
use reqwest::redirect::Policy;
use reqwest::Version;
use support::{certificate, Stack, StackOptions, TlsFiles};

/// A client that trusts `ca` and finds `names` at 127.0.0.1.
fn client(ca: &str, names: &[&str], port: u16, http1: bool, follow: bool) -> Client {
    let mut builder = Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .redirect(if follow {
            Policy::limited(2)
        } else {
            Policy::none()
        })
        .timeout(Duration::from_secs(30));
    for name in names {
        builder = builder.resolve(name, SocketAddr::from(([127, 0, 0, 1], port)));
    }
    if http1 {
        builder = builder.http1_only();
    }
    builder.build().unwrap()
}

fn tls_stack(files: TlsFiles) -> Stack {
    Stack::start_with(StackOptions {
        tls: Some(files),
        ..StackOptions::default()
    })
}

#[test]
fn every_kind_of_answer_works_over_h2_and_over_tls_http1() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, files) = certificate(certs.path(), "site", &["localhost"]);
    let stack = tls_stack(files);
    let port = stack.tls_port.unwrap();
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    stack.put_local("static", "big.bin", &bytes);
    stack
        .s3
        .put_object("media", "uploads/in-s3.txt", b"from the bucket");
    for (http1, version) in [(false, Version::HTTP_2), (true, Version::HTTP_11)] {
        let plain = client(&ca, &["localhost"], port, http1, false);
        let base = format!("https://localhost:{port}");
        let what = format!("{version:?}");

        let whole = plain.get(format!("{base}/static/big.bin")).send().unwrap();
        assert_eq!(whole.version(), version, "{what}");
        assert_eq!(whole.status(), 200, "{what}");
        let etag = whole.headers()["etag"].to_str().unwrap().to_owned();
        assert_eq!(
            whole.bytes().unwrap().as_ref(),
            &bytes[..],
            "{what}: the file"
        );

        let range = plain
            .get(format!("{base}/static/big.bin"))
            .header("range", "bytes=1000-1999")
            .send()
            .unwrap();
        assert_eq!(range.status(), 206, "{what}");
        assert_eq!(range.headers()["content-range"], "bytes 1000-1999/300000");
        assert_eq!(
            range.bytes().unwrap().as_ref(),
            &bytes[1000..2000],
            "{what}"
        );

        let multi = plain
            .get(format!("{base}/static/big.bin"))
            .header("range", "bytes=0-9,100-109")
            .send()
            .unwrap();
        assert_eq!(multi.status(), 206, "{what}");
        assert!(multi.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("multipart/byteranges; boundary="));

        let revalidated = plain
            .get(format!("{base}/static/big.bin"))
            .header("if-none-match", &etag)
            .send()
            .unwrap();
        assert_eq!(revalidated.status(), 304, "{what}");
        assert!(revalidated.bytes().unwrap().is_empty());

        let head = plain.head(format!("{base}/static/big.bin")).send().unwrap();
        assert_eq!(head.status(), 200, "{what}");
        assert_eq!(head.headers()["content-length"], "300000");
        assert!(head.bytes().unwrap().is_empty(), "{what}: HEAD has no body");

        let missing = plain.get(format!("{base}/static/nope")).send().unwrap();
        assert_eq!(missing.status(), 404, "{what}");

        let redirect = plain
            .get(format!("{base}/uploads/in-s3.txt"))
            .send()
            .unwrap();
        assert_eq!(redirect.status(), 302, "{what}");
        assert!(redirect.headers()["location"]
            .to_str()
            .unwrap()
            .contains("X-Amz-Signature="));
        let followed = client(&ca, &["localhost"], port, http1, true)
            .get(format!("{base}/uploads/in-s3.txt"))
            .send()
            .unwrap();
        assert_eq!(followed.status(), 200, "{what}: the presigned link works");
        assert_eq!(followed.bytes().unwrap().as_ref(), b"from the bucket");

        let proxied = plain
            .get(format!("{base}/forum/thread?id=1"))
            .send()
            .unwrap();
        assert_eq!(proxied.status(), 200, "{what}");
        let echo = proxied.text().unwrap();
        assert!(echo.contains("uri: /forum/thread?id=1"), "{what}: {echo}");
        assert!(
            echo.contains("header: x-forwarded-proto: https"),
            "{what}: the proto comes from the listener: {echo}"
        );
    }
    // The plain listener still says http.
    let plain_echo = support::get(stack.port(), "/forum/");
    assert!(plain_echo
        .text()
        .contains("header: x-forwarded-proto: http\n"));
}

#[test]
fn sni_chooses_the_certificate_for_the_name_asked_for() {
    let certs = tempfile::tempdir().unwrap();
    let (main_ca, mut files) = certificate(certs.path(), "main", &["localhost"]);
    let (other_ca, other) = certificate(certs.path(), "other", &["other.test", "*.other.test"]);
    files.sni.push((other.cert, other.key));
    let stack = tls_stack(files);
    let port = stack.tls_port.unwrap();
    let names = ["localhost", "other.test", "www.other.test"];
    let ok = |ca: &str, name: &str| {
        client(ca, &names, port, false, false)
            .get(format!("https://{name}:{port}/static/nope"))
            .send()
            .is_ok()
    };
    assert!(
        ok(&other_ca, "other.test"),
        "the sni certificate for its name"
    );
    assert!(ok(&other_ca, "www.other.test"), "and for its wildcard");
    assert!(!ok(&other_ca, "localhost"), "not for another name");
    assert!(ok(&main_ca, "localhost"), "the default certificate");
}

#[test]
fn cors_fields_limits_and_preflights_are_the_same_over_h2() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, files) = certificate(certs.path(), "site", &["localhost"]);
    let stack = Stack::start_with(StackOptions {
        tls: Some(files),
        extra_routes: "  - prefix: /shared\n    root: www/shared\n    upstream: legacy\n    cors:\n      origins: [\"https://app.example.com\"]\n    limits:\n      max_body: 4B\n",
        extra_roots: &["shared"],
        ..StackOptions::default()
    });
    stack.put_local("shared", "a.txt", b"abc");
    let port = stack.tls_port.unwrap();
    let h2 = client(&ca, &["localhost"], port, false, false);
    let url = format!("https://localhost:{port}/shared/a.txt");
    let origin = ("Origin", "https://app.example.com");
    let file = h2.get(&url).header(origin.0, origin.1).send().unwrap();
    assert_eq!(
        (file.version(), file.status().as_u16()),
        (Version::HTTP_2, 200)
    );
    assert_eq!(
        file.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    assert_eq!(file.headers()["vary"], "Origin");
    let preflight = h2
        .request(reqwest::Method::OPTIONS, &url)
        .header(origin.0, origin.1)
        .header("Access-Control-Request-Method", "GET")
        .send()
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-methods"],
        "GET, HEAD"
    );
    // A body over the route's max_body, over h2: refused before the upstream.
    let upload = h2
        .post(format!("https://localhost:{port}/shared/new.txt"))
        .body("too long")
        .send()
        .unwrap();
    assert_eq!(upload.status().as_u16(), 413);
}
