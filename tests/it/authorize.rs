//! `authorize:`: private objects are presigned only when the legacy application says yes.

use crate::support;

use support::{request, AuthApp, Response, Spillway};

/// A spillway listening on `listen` (YAML, given the plain port), with the `auth` upstream on
/// `auth_port`, and a `/private` route (private objects of the `media` bucket, local files under
/// `www/private`) whose last keys are `route`.
fn start(auth_port: u16, listen: impl Fn(u16) -> String, route: &str) -> Spillway {
    Spillway::start_custom(&[], |port, dir| {
        std::fs::create_dir_all(dir.join("www/private")).unwrap();
        format!(
            r#"{}
threads: 1
upstreams:
  auth:
    address: "127.0.0.1:{auth_port}"
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "http://127.0.0.1:9"
    credentials: {{ access_key_id: AK, secret_access_key: SK }}
routes:
  - prefix: /private
    root: www/private
    bucket: media
    key_prefix: private/
{route}"#,
            listen(port)
        )
    })
}

fn plain(port: u16) -> String {
    format!("listen: \"127.0.0.1:{port}\"")
}

/// A spillway whose `/private` route (`public/**` public) asks `auth` before answering, within
/// 2 s (the app's `sid=slow` takes 3); `options` are more keys of `authorize:`.
fn with_check(auth_port: u16, options: &str) -> Spillway {
    let route = format!(
        r#"    rules:
      - {{ match: "public/**", access: public }}
    authorize:
      upstream: auth
      path: /spillway/authorize
      forward: [cookie]
      timeout: 2s
{options}"#
    );
    start(auth_port, plain, &route)
}

fn get_as(port: u16, path: &str, cookie: Option<&str>) -> Response {
    let mut headers = vec![("User-Agent", "test-agent")];
    if let Some(cookie) = cookie {
        headers.push(("Cookie", cookie));
    }
    request(port, "GET", path, &headers, b"")
}

fn presigned(resp: &Response) -> bool {
    resp.status == 302
        && resp
            .header("location")
            .is_some_and(|l| l.contains("X-Amz-Signature="))
}

#[test]
fn a_yes_presigns_and_the_app_is_told_the_canonical_request() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    let resp = get_as(
        proxy.port,
        "/private/r%C3%A9sum%C3%A9.pdf",
        Some("sid=alice"),
    );
    assert!(
        presigned(&resp),
        "{} {:?}",
        resp.status,
        resp.header("location")
    );
    assert_eq!(resp.header("cache-control"), Some("private, no-store"));
    let asked = app.asked();
    assert_eq!(asked.len(), 1);
    let h = &asked[0];
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    assert_eq!(get("x-original-uri"), Some("/private/r%C3%A9sum%C3%A9.pdf"));
    assert_eq!(get("x-original-method"), Some("GET"));
    assert_eq!(get("x-forwarded-for"), Some("127.0.0.1"));
    assert_eq!(get("cookie"), Some("sid=alice"));
    assert_eq!(
        get("user-agent"),
        None,
        "only the forwarded headers are passed on"
    );
}

#[test]
fn the_apps_no_reaches_the_client_as_it_gave_it() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    let resp = get_as(proxy.port, "/private/a.pdf", None);
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.header("www-authenticate"),
        Some("Cookie realm=\"site\"")
    );
    assert_eq!(resp.text(), "log in first\n");
    assert_eq!(resp.header("location"), None);

    let resp = get_as(proxy.port, "/private/a.pdf", Some("sid=bob"));
    assert_eq!((resp.status, resp.text().as_str()), (403, "bob may not\n"));
    assert_eq!(resp.header("location"), None);
    assert_eq!(resp.header("cache-control"), Some("private, no-store"));

    let resp = get_as(proxy.port, "/private/a.pdf", Some("sid=guest"));
    assert_eq!(resp.status, 302, "a login page");
    assert_eq!(
        resp.header("location"),
        Some("/login?next=/private/a.pdf"),
        "the app's own redirect, never a presigned link"
    );
    let logs = proxy.wait_for_log("outcome=\"denied\"");
    assert!(logs.contains("status=401"), "{logs}");
}

#[test]
fn no_answer_is_a_503_never_a_link() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    for (cookie, why) in [
        (
            "sid=broken",
            "authorization check failed: auth /spillway/authorize answered 500 Internal Server Error, neither yes (2xx) nor no (401, 403, 3xx)",
        ),
        ("sid=slow", "authorization check failed: no answer within 2s"),
    ] {
        let resp = get_as(proxy.port, "/private/a.pdf", Some(cookie));
        assert_eq!(resp.status, 503, "{cookie}");
        assert_eq!(resp.header("retry-after"), Some("5"));
        assert_eq!(resp.header("location"), None, "{cookie}");
        // The whole message, once: the error line and the request's log line say it.
        let logs = proxy.wait_for_log(why);
        let error = logs
            .lines()
            .find(|l| l.contains(" ERROR ") && l.contains(why))
            .unwrap_or_else(|| panic!("no error line for {cookie}:\n{logs}"));
        let message = error.split_once("spillway::front::local: ").map(|(_, m)| m);
        assert_eq!(message, Some(format!("{why} path=\"/private/a.pdf\"").as_str()));
    }
    // The application down.
    let dead = support::free_port();
    let proxy = with_check(dead, "");
    let resp = get_as(proxy.port, "/private/a.pdf", Some("sid=alice"));
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("location"), None);
    proxy.wait_for_log("cannot connect to upstream auth");
}

#[test]
fn answers_are_kept_for_their_window_and_asked_again_after_it() {
    let app = AuthApp::start();
    // A window long enough for five requests on a loaded machine.
    let proxy = with_check(app.port, "      cache: 3s\n");
    // One decision for one path, however it is spelled on the wire.
    for path in ["/private/a.pdf", "/private/%61.pdf", "/private/a%2Epdf"] {
        let resp = get_as(proxy.port, path, Some("sid=alice"));
        assert!(presigned(&resp), "{path}: {}", resp.status);
    }
    assert_eq!(app.asked().len(), 1, "asked once");
    // Another identity is another decision.
    assert_eq!(
        get_as(proxy.port, "/private/a.pdf", Some("sid=bob")).status,
        403
    );
    assert_eq!(
        get_as(proxy.port, "/private/a.pdf", Some("sid=bob")).status,
        403
    );
    assert_eq!(app.asked().len(), 2, "bob's no is kept too");
    // The window is what is tested: it has passed after this long.
    std::thread::sleep(std::time::Duration::from_secs(3));
    assert!(presigned(&get_as(
        proxy.port,
        "/private/a.pdf",
        Some("sid=alice")
    )));
    assert_eq!(app.asked().len(), 3, "asked again after the window");
}

#[test]
fn identity_headers_a_client_sends_never_reach_the_app() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    let resp = request(
        proxy.port,
        "GET",
        "/private/secret.pdf",
        &[
            ("Cookie", "sid=bob"),
            ("X-Original-URI", "/private/public/ok.png"),
            ("X-Original-Method", "HEAD"),
        ],
        b"",
    );
    assert_eq!(resp.status, 403);
    let asked = app.asked();
    let all = |name: &str| -> Vec<String> {
        asked[0]
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(all("x-original-uri"), ["/private/secret.pdf"]);
    assert_eq!(all("x-original-method"), ["GET"]);
}

#[test]
fn public_objects_and_local_files_are_not_checked_unless_applies_to_all() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    std::fs::write(proxy.spillway_dir().join("www/private/here.txt"), "local").unwrap();
    let resp = get_as(proxy.port, "/private/here.txt", None);
    assert_eq!((resp.status, resp.text().as_str()), (200, "local"));
    let resp = get_as(proxy.port, "/private/public/logo.png", None);
    assert_eq!(resp.status, 302);
    assert!(!presigned(&resp));
    assert!(app.asked().is_empty(), "never asked");

    let proxy = with_check(app.port, "      applies_to: all\n");
    std::fs::write(proxy.spillway_dir().join("www/private/here.txt"), "local").unwrap();
    assert_eq!(get_as(proxy.port, "/private/here.txt", None).status, 401);
    assert_eq!(
        get_as(proxy.port, "/private/public/logo.png", None).status,
        401
    );
    let resp = get_as(proxy.port, "/private/here.txt", Some("sid=alice"));
    assert_eq!((resp.status, resp.text().as_str()), (200, "local"));
}

#[test]
fn explain_says_which_check_would_run() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    let out = support::run_cli(&[
        "explain",
        "--config",
        proxy.config_path().to_str().unwrap(),
        "/private/a%20b.pdf",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("authorize"))
        .unwrap_or_else(|| panic!("no authorize line in\n{text}"));
    assert_eq!(
        line,
        format!(
            "authorize     GET auth (127.0.0.1:{}) /spillway/authorize with X-Original-URI: /private/a%20b.pdf, X-Original-Method: GET, forwarding cookie; the answer before it is sent",
            app.port
        )
    );
}

#[test]
fn explain_with_a_cookie_runs_the_check_for_real() {
    let app = AuthApp::start();
    let proxy = with_check(app.port, "");
    let config = proxy.config_path();
    let explain = |cookie: &str| {
        let out = support::run_cli(&[
            "explain",
            "--config",
            config.to_str().unwrap(),
            "--cookie",
            cookie,
            "/private/a.pdf",
        ]);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let field = |text: &str, name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    let bob = explain("sid=bob");
    assert_eq!(field(&bob, "status"), "403");
    assert_eq!(field(&bob, "outcome"), "denied");
    assert_eq!(field(&bob, "reason"), "the application said no");
    let alice = explain("sid=alice");
    assert_eq!(field(&alice, "outcome"), "presigned");
    assert!(field(&alice, "location").contains("X-Amz-Signature="));
    let asked = app.asked();
    assert_eq!(asked.len(), 2, "asked once each");
    assert_eq!(asked[0].get("cookie").unwrap(), "sid=bob");
}

#[test]
fn over_h2_the_check_runs_and_names_the_site_asked_for() {
    let app = AuthApp::start();
    let certs = tempfile::tempdir().unwrap();
    let (ca, files) = support::certificate(certs.path(), "site", &["localhost"]);
    let chosen = std::cell::Cell::new(0);
    let listen = |port: u16| {
        // Afresh at each try, as the plain port is (a retry after a port in use).
        let tls_port = support::free_port();
        chosen.set(tls_port);
        format!(
            "listen:\n  - \"127.0.0.1:{port}\"\n  - address: \"127.0.0.1:{tls_port}\"\n    tls: {{ cert: \"{}\", key: \"{}\" }}",
            files.cert.display(),
            files.key.display()
        )
    };
    let check = "    authorize: { upstream: auth, path: /spillway/authorize, forward: [cookie] }\n";
    let proxy = start(app.port, listen, check);
    let tls_port = chosen.get();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], tls_port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://localhost:{tls_port}/private/a.pdf"))
        .header("cookie", "sid=bob")
        .send()
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 403);
    assert_eq!(resp.text().unwrap(), "bob may not\n");
    let asked = app.asked();
    assert_eq!(asked.len(), 1);
    let host = format!("localhost:{tls_port}");
    assert_eq!(asked[0].get("host").unwrap().to_str().unwrap(), host);
    assert_eq!(asked[0].get("x-original-uri").unwrap(), "/private/a.pdf");
    drop(proxy);
}

#[test]
fn a_rule_can_have_a_check_of_its_own() {
    let app = AuthApp::start();
    let rules = r#"    rules:
      - match: "reports/**"
        access: private
        authorize: { upstream: auth, path: /spillway/authorize, forward: [cookie] }
"#;
    let proxy = start(app.port, plain, rules);
    let resp = get_as(proxy.port, "/private/reports/q1.pdf", Some("sid=bob"));
    assert_eq!(resp.status, 403, "the rule's check");
    assert!(presigned(&get_as(
        proxy.port,
        "/private/other.pdf",
        Some("sid=bob")
    )));
    assert_eq!(app.asked().len(), 1, "asked for the rule's path only");
}
