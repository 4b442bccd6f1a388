//! Misses redirect to S3: public objects plainly, private ones presigned. Every presigned
//! Location is followed to a real S3 server that checks signatures.

use crate::support;

use support::{follow, get, request, Conn, Stack};

#[test]
fn a_public_miss_redirects_to_the_object_url() {
    let stack = Stack::start();
    let resp = get(stack.port(), "/uploads/avatars/a%20b+c.png?size=large");
    assert_eq!(resp.status, 302);
    let want = format!(
        "{}/media/uploads/avatars/a%20b%2Bc.png",
        stack.s3.endpoint()
    );
    assert_eq!(
        resp.header("location"),
        Some(want.as_str()),
        "key encoded the S3 way, query dropped"
    );
    assert_eq!(resp.header("content-length"), Some("0"));
    assert_eq!(
        resp.header("cache-control"),
        Some("public, max-age=300"),
        "public redirects may be cached for redirect_max_age (default 5m)"
    );
    assert!(resp.body.is_empty());

    stack
        .s3
        .put_object("media", "uploads/avatars/a b+c.png", b"public bytes");
    let object = follow(&want, "GET");
    // The test bucket itself is private, so the unsigned URL is refused: proof the redirect
    // really is unsigned, and the reason spillway must presign private objects.
    assert_eq!(
        object.status, 403,
        "an unsigned request to the signature-checking server"
    );
}

#[test]
fn a_private_miss_is_presigned_and_the_link_works() {
    let stack = Stack::start();
    let key = "uploads/reports/Q1 (final)+draft.pdf";
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    stack.s3.put_object("media", key, &bytes);

    let resp = get(stack.port(), "/uploads/reports/Q1%20(final)%2Bdraft.pdf");
    assert_eq!(resp.status, 302);
    assert_eq!(
        resp.header("cache-control"),
        Some("private, no-store"),
        "never in a shared cache"
    );
    assert_eq!(resp.header("content-length"), Some("0"));
    let location = resp.header("location").expect("Location");
    let prefix = format!(
        "{}/media/uploads/reports/Q1%20%28final%29%2Bdraft.pdf?",
        stack.s3.endpoint()
    );
    assert!(location.starts_with(&prefix), "{location}");
    for part in [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256",
        "X-Amz-Expires=300",
        "X-Amz-Signature=",
    ] {
        assert!(location.contains(part), "{part} in {location}");
    }

    let object = follow(location, "GET");
    assert_eq!(
        object.status,
        200,
        "S3 accepted the signature: {}",
        object.text()
    );
    assert_eq!(object.body, bytes, "the bytes stored in S3");
}

#[test]
fn head_gets_a_head_signed_link() {
    let stack = Stack::start();
    stack
        .s3
        .put_object("media", "uploads/doc.pdf", b"0123456789");
    let resp = request(stack.port(), "HEAD", "/uploads/doc.pdf", &[], b"");
    assert_eq!(resp.status, 302);
    assert!(resp.body.is_empty());
    let object = follow(resp.header("location").unwrap(), "HEAD");
    assert_eq!(object.status, 200, "HEAD on the HEAD-signed link");
    assert_eq!(object.header("content-length"), Some("10"));
}

#[test]
fn a_link_signed_with_the_wrong_secret_is_refused_by_s3() {
    let stack = Stack::start();
    stack.s3.put_object("media", "uploads/doc.pdf", b"secret");
    let resp = get(stack.port(), "/forged/doc.pdf");
    assert_eq!(resp.status, 302);
    let object = follow(resp.header("location").unwrap(), "GET");
    assert_eq!(object.status, 403, "the S3 server checks signatures");
    assert!(
        object.text().contains("SignatureDoesNotMatch"),
        "{}",
        object.text()
    );
}

#[test]
fn location_comes_from_config_never_from_host() {
    let stack = Stack::start();
    let resp = request(
        stack.port(),
        "GET",
        "/uploads/avatars/x.png",
        &[
            ("Host", "evil.example"),
            ("X-Forwarded-Host", "evil.example"),
        ],
        b"",
    );
    assert_eq!(resp.status, 302);
    let location = resp.header("location").unwrap();
    assert!(location.starts_with(&stack.s3.endpoint()), "{location}");
    assert!(!location.contains("evil"), "{location}");
}

#[test]
fn redirects_keep_the_connection_alive() {
    let stack = Stack::start();
    stack.put_local("uploads", "here.txt", b"local");
    let mut conn = Conn::open(stack.port());
    for _ in 0..3 {
        let resp = conn.send("GET", "/uploads/avatars/x.png", &[], b"");
        assert_eq!(resp.status, 302);
        let resp = conn.send("GET", "/uploads/private.pdf", &[], b"");
        assert_eq!(resp.status, 302);
        let resp = conn.send("GET", "/uploads/here.txt", &[], b"");
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body, b"local");
    }
}

#[test]
fn logs_say_what_happened_but_never_the_signature_or_secret() {
    let stack = Stack::start();
    let resp = get(stack.port(), "/uploads/secret-report.pdf?token=abc");
    let location = resp.header("location").unwrap().to_owned();
    let signature = location.split("X-Amz-Signature=").nth(1).unwrap();
    let logs = stack.proxy.wait_for_log("/uploads/secret-report.pdf");
    let line = logs
        .lines()
        .find(|l| l.contains("/uploads/secret-report.pdf"))
        .unwrap();
    assert!(line.contains("presigned") && line.contains("302"), "{line}");
    assert!(!logs.contains(signature), "signature logged:\n{logs}");
    assert!(
        !logs.contains(support::SECRET_KEY),
        "secret logged:\n{logs}"
    );
    assert!(
        !logs.contains("token=abc"),
        "query strings are not logged:\n{logs}"
    );
}
