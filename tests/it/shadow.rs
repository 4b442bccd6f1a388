//! `shadow: true`: everything goes to the upstream unchanged; spillway logs and counts what it
//! would have done, and whether the upstream agreed.

use crate::support;

use support::{free_port, get, request, Legacy, Spillway};

#[test]
fn a_shadow_route_sends_everything_upstream_and_says_what_it_would_have_done() {
    let legacy = Legacy::start();
    let admin = free_port();
    let proxy = Spillway::start_custom(&[], |port, dir| {
        std::fs::create_dir_all(dir.join("www/uploads")).unwrap();
        format!(
            r#"listen: "127.0.0.1:{port}"
threads: 1
admin: "127.0.0.1:{admin}"
upstreams:
  legacy:
    address: "127.0.0.1:{}"
default_upstream: legacy
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "http://127.0.0.1:9"
    credentials: {{ access_key_id: AK, secret_access_key: SK }}
routes:
  - prefix: /uploads
    root: www/uploads
    bucket: media
    key_prefix: uploads/
    shadow: true
"#,
            legacy.port
        )
    });
    let www = proxy.spillway_dir().join("www/uploads");
    std::fs::write(www.join("here.txt"), "local").unwrap();

    // Both answered by the upstream, exactly as sent.
    for path in ["/uploads/here.txt?v=1", "/uploads/gone.pdf"] {
        let resp = request(proxy.port, "GET", path, &[("Cookie", "sid=1")], b"");
        assert_eq!(resp.header("x-legacy"), Some("1"), "{path}");
        let echo = resp.text();
        assert!(echo.contains(&format!("uri: {path}\n")), "{echo}");
        assert!(echo.contains("header: cookie: sid=1\n"), "{echo}");
    }
    let logs = proxy.wait_for_log("/uploads/gone.pdf");
    let line = |path: &str| {
        logs.lines()
            .find(|l| l.contains(&format!("path=\"{path}\"")))
            .unwrap_or_else(|| panic!("no line for {path}:\n{logs}"))
            .to_owned()
    };
    let here = line("/uploads/here.txt");
    assert!(here.contains("outcome=\"upstream\""), "{here}");
    assert!(here.contains("would=\"served\" agrees=true"), "{here}");
    // The disagreement: spillway would presign, but the upstream answered 200 with a page.
    let gone = line("/uploads/gone.pdf");
    assert!(gone.contains("would=\"presigned\" agrees=false"), "{gone}");

    let metrics = get(admin, "/metrics").text();
    for sample in [
        "spillway_shadow_total{route=\"/uploads\",upstream_status=\"200\",would=\"served\"} 1",
        "spillway_shadow_total{route=\"/uploads\",upstream_status=\"200\",would=\"presigned\"} 1",
    ] {
        assert!(metrics.contains(sample), "{sample} in\n{metrics}");
    }
}
