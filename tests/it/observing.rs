//! What an operator sees: `/metrics` counting exactly what was sent, `/healthz` and `/readyz`,
//! and access logs in the formats log tools read, with no secret in any of them.

use crate::support;

use std::time::Duration;

use support::{free_port, get, request, scrape, wait_until, Spillway, Stack, StackOptions};

fn with_admin(extra: &str) -> (Stack, u16) {
    let admin = free_port();
    let stack = Stack::start_with(StackOptions {
        extra_top: format!("admin: \"127.0.0.1:{admin}\"\n{extra}"),
        ..StackOptions::default()
    });
    (stack, admin)
}

#[test]
fn every_counter_moves_by_exactly_what_was_sent() {
    let (stack, admin) = with_admin("");
    stack.put_local("uploads", "here.txt", b"0123456789");
    let etag = get(stack.port(), "/uploads/here.txt")
        .header("etag")
        .unwrap()
        .to_owned();
    // A request is counted just after its response is sent: the baseline includes this one.
    let first = "spillway_requests_total{outcome=served,route=/uploads,status=200}";
    wait_until("the first request is counted", || {
        scrape(admin).get(first) == Some(&1.0)
    });
    let before = scrape(admin);
    let served = get(stack.port(), "/uploads/here.txt");
    let not_modified = request(
        stack.port(),
        "GET",
        "/uploads/here.txt",
        &[("If-None-Match", &etag)],
        b"",
    );
    let public = get(stack.port(), "/uploads/avatars/me.png");
    let presigned = get(stack.port(), "/uploads/private.pdf");
    let upstream = get(stack.port(), "/forum/");
    let bad = get(stack.port(), "/uploads/a%2fb");
    let statuses: Vec<u16> = [&served, &not_modified, &public, &presigned, &upstream, &bad]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(statuses, [200, 304, 302, 302, 200, 400]);
    let want = [
        ("route=/uploads", "served", "200"),
        ("route=/uploads", "not_modified", "304"),
        ("route=/uploads", "redirect", "302"),
        ("route=/uploads", "presigned", "302"),
        ("route=-", "upstream", "200"),
        ("route=/uploads", "rejected", "400"),
    ];
    let key = |(route, outcome, status): (&str, &str, &str)| {
        format!("spillway_requests_total{{outcome={outcome},{route},status={status}}}")
    };
    wait_until("the counters count the requests", || {
        let after = scrape(admin);
        want.iter().all(|&w| {
            after.get(&key(w)).copied().unwrap_or(0.0) - before.get(&key(w)).copied().unwrap_or(0.0)
                == 1.0
        })
    });
    let after = scrape(admin);
    let delta = |name: &str| {
        after.get(name).copied().unwrap_or(0.0) - before.get(name).copied().unwrap_or(0.0)
    };
    for w in want {
        assert_eq!(delta(&key(w)), 1.0, "{}", key(w));
    }
    assert_eq!(
        delta("spillway_response_body_bytes_total{outcome=served,route=/uploads}"),
        10.0,
        "the file's bytes"
    );
    assert_eq!(
        delta("spillway_request_duration_seconds_count{outcome=presigned,route=/uploads}"),
        1.0
    );
    assert!(after
        .keys()
        .any(|k| k.starts_with("spillway_build_info{") && k.contains("version=0.1.0")));
    assert!(after.contains_key("spillway_config_reloads_total{result=ok}"));
    // Label values are bounded: never a request path.
    assert!(!after
        .keys()
        .any(|k| k.contains("here.txt") || k.contains("forum")));
}

#[test]
fn an_unreachable_upstream_is_counted_by_name_and_kind() {
    let admin = free_port();
    let gone = free_port();
    let proxy = Spillway::start_with(|port| {
        format!(
            "listen: \"127.0.0.1:{port}\"\nadmin: \"127.0.0.1:{admin}\"\nupstreams:\n  gone:\n    address: \"127.0.0.1:{gone}\"\ndefault_upstream: gone\n"
        )
    });
    assert_eq!(get(proxy.port, "/anything").status, 502);
    wait_until("the error is counted", || {
        scrape(admin).get("spillway_upstream_errors_total{kind=connect,upstream=gone}")
            == Some(&1.0)
    });
}

#[test]
fn health_and_readiness() {
    let (_stack, admin) = with_admin("");
    let health = get(admin, "/healthz");
    assert_eq!((health.status, health.text().as_str()), (200, "ok\n"));
    wait_until("ready", || get(admin, "/readyz").status == 200);
    assert_eq!(get(admin, "/readyz").text(), "ready\n");
    assert_eq!(get(admin, "/nope").status, 404);
}

/// Serves container credentials (the ECS endpoint the AWS provider chain asks) that expire
/// in `lifetime`.
fn credentials_endpoint(
    lifetime: Duration,
) -> (
    std::thread::JoinHandle<()>,
    u16,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = std::sync::Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let expiry = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + lifetime);
            let body = format!(
                "{{\"AccessKeyId\":\"AKIDCONTAINER\",\"SecretAccessKey\":\"container-secret\",\"Token\":\"container-token\",\"Expiration\":\"{expiry}\"}}"
            );
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (thread, port, stop)
}

fn chain_server(lifetime: Duration) -> (Spillway, u16) {
    let (_thread, port, _stop) = credentials_endpoint(lifetime);
    let admin = free_port();
    let uri = format!("http://127.0.0.1:{port}/credentials");
    let env = [
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", uri.as_str()),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
    ];
    let proxy = Spillway::start_custom(&env, |port, dir| {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        format!(
            "listen: \"127.0.0.1:{port}\"\nadmin: \"127.0.0.1:{admin}\"\nbuckets:\n  media:\n    bucket: media\n    region: us-east-1\n    endpoint: \"http://127.0.0.1:9\"\nroutes:\n  - prefix: /p\n    root: www\n    bucket: media\n    ttl: 5m\n"
        )
    });
    (proxy, admin)
}

#[test]
fn readyz_is_503_while_credentials_expire_too_soon_and_200_with_fresh_ones() {
    let (_expiring, admin) = chain_server(Duration::from_secs(200));
    wait_until("listeners up", || {
        !get(admin, "/readyz").text().contains("not accepting yet")
    });
    let resp = get(admin, "/readyz");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert!(
        resp.text()
            .starts_with("not ready: the signing credentials expire in ")
            && resp
                .text()
                .ends_with("sooner than the longest link needs (360s)\n"),
        "{}",
        resp.text()
    );
    let expiry = scrape(admin)["spillway_credentials_expiry_seconds{bucket=media}"];
    assert!((100.0..=200.0).contains(&expiry), "{expiry}");

    let (_fresh, admin) = chain_server(Duration::from_secs(3600));
    wait_until("ready with fresh credentials", || {
        get(admin, "/readyz").status == 200
    });
}

/// Starts a stack whose access log goes to `access.log` in `format`.
fn logging(format: &str) -> (Stack, std::path::PathBuf) {
    let stack = Stack::start_with(StackOptions {
        extra_top: format!("access_log:\n  format: {format}\n  path: access.log\n"),
        ..StackOptions::default()
    });
    let path = stack.proxy.spillway_dir().join("access.log");
    (stack, path)
}

/// The lines of `path` once it has `count` of them.
fn lines(path: &std::path::Path, count: usize) -> Vec<String> {
    let mut found = Vec::new();
    wait_until("the access log lines", || {
        found = std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect();
        found.len() >= count
    });
    found
}

#[test]
fn combined_lines_are_nginx_combined() {
    let (stack, path) = logging("combined");
    stack.put_local("static", "a.txt", b"12345");
    request(
        stack.port(),
        "GET",
        "/static/a.txt?secret=1",
        &[
            ("User-Agent", "probe/1.0"),
            ("Referer", "https://example.com/page"),
        ],
        b"",
    );
    let line = &lines(&path, 1)[0];
    // `127.0.0.1 - - [29/Nov/2026:14:35:47 +0000] "GET /static/a.txt HTTP/1.1" 200 5 "https://example.com/page" "probe/1.0"`
    let (start, rest) = line.split_once(" [").unwrap();
    assert_eq!(start, "127.0.0.1 - -");
    let (time, rest) = rest.split_once("] ").unwrap();
    assert!(
        time.len() == 26 && time.ends_with(" +0000") && time.as_bytes()[2] == b'/',
        "{time}"
    );
    assert_eq!(
        rest,
        "\"GET /static/a.txt HTTP/1.1\" 200 5 \"https://example.com/page\" \"probe/1.0\""
    );
}

#[test]
fn json_lines_carry_every_field_and_the_request_id_goes_upstream() {
    let (stack, path) = logging("json");
    stack.put_local("static", "a.txt", b"12345");
    request(
        stack.port(),
        "GET",
        "/static/a.txt",
        &[("User-Agent", "probe/1.0")],
        b"",
    );
    let echo = request(
        stack.port(),
        "GET",
        "/forum/?q=1",
        &[("X-Request-Id", "client-id-42")],
        b"",
    );
    let sent_id = echo
        .text()
        .lines()
        .find_map(|l| l.strip_prefix("header: x-request-id: "))
        .map(str::to_owned);
    let all = lines(&path, 2);
    let values: Vec<serde_json::Value> = all
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let file = values
        .iter()
        .find(|v| v["path"] == "/static/a.txt")
        .unwrap();
    let mut fields = file.clone();
    for volatile in ["time", "duration_ms", "request_id"] {
        assert!(fields.get(volatile).is_some(), "{volatile}");
        fields.as_object_mut().unwrap().remove(volatile);
    }
    assert_eq!(
        fields,
        serde_json::json!({
            "client": "127.0.0.1", "method": "GET", "path": "/static/a.txt", "protocol": "HTTP/1.1",
            "status": 200, "bytes": 5, "route": "/static", "outcome": "served",
            "user_agent": "probe/1.0", "referer": null
        })
    );
    let proxied = values.iter().find(|v| v["path"] == "/forum/").unwrap();
    assert_eq!(proxied["outcome"], "upstream");
    assert_eq!(
        proxied["request_id"], "client-id-42",
        "a well-formed client id is kept"
    );
    assert_eq!(
        sent_id.as_deref(),
        Some("client-id-42"),
        "and sent upstream"
    );
    assert_ne!(file["request_id"], proxied["request_id"]);
}

#[test]
fn no_log_format_ever_holds_a_signature_a_credential_or_a_query() {
    for format in ["text", "json", "combined"] {
        let (stack, path) = logging(format);
        let presigned = get(stack.port(), "/uploads/private.pdf?token=abc");
        let location = presigned.header("location").unwrap().to_owned();
        assert!(location.contains("X-Amz-Signature="));
        get(stack.port(), "/forum/?session=xyz");
        let text = lines(&path, 2).join("\n");
        let logs = format!("{text}\n{}", stack.proxy.logs());
        for secret in [
            "X-Amz-Signature",
            "X-Amz-Credential",
            support::SECRET_KEY,
            "token=abc",
            "session=xyz",
        ] {
            assert!(!logs.contains(secret), "{format}: {secret} in\n{logs}");
        }
    }
}

/// What logrotate does: moves the log to `.log.1`, then sends SIGUSR1. Returns the moved file.
fn rotate(stack: &Stack, path: &std::path::Path) -> std::path::PathBuf {
    let rotated = path.with_extension("log.1");
    std::fs::rename(path, &rotated).unwrap();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &stack.proxy.pid().to_string()])
        .status()
        .unwrap()
        .success());
    rotated
}

#[test]
fn the_log_file_is_reopened_on_sigusr1() {
    let (stack, path) = logging("text");
    stack.put_local("static", "a.txt", b"x");
    get(stack.port(), "/static/a.txt?first");
    lines(&path, 1);
    let rotated = rotate(&stack, &path);
    stack
        .proxy
        .wait_for_log("SIGUSR1: reopening the access log");
    wait_until("a new file", || {
        get(stack.port(), "/static/a.txt");
        path.exists()
            && !std::fs::read_to_string(&path)
                .unwrap_or_default()
                .is_empty()
    });
    assert_eq!(
        std::fs::read_to_string(&rotated).unwrap().lines().count(),
        1
    );
}

/// logrotate runs whatever the traffic: a log written without a pause is reopened too.
#[test]
fn the_log_file_is_reopened_on_sigusr1_under_steady_traffic() {
    let (stack, path) = logging("text");
    stack.put_local("static", "a.txt", b"x");
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                assert_eq!(get(stack.port(), "/static/a.txt").status, 200);
            }
        });
        lines(&path, 50);
        rotate(&stack, &path);
        let reopened = std::panic::catch_unwind(|| lines(&path, 50));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Err(panic) = reopened {
            std::panic::resume_unwind(panic);
        }
    });
}

#[test]
fn a_log_that_cannot_be_written_drops_lines_and_counts_them() {
    let admin = free_port();
    let stack = Stack::start_with(StackOptions {
        extra_top: format!(
            "admin: \"127.0.0.1:{admin}\"\naccess_log:\n  format: json\n  path: /dev/full\n"
        ),
        ..StackOptions::default()
    });
    stack.put_local("static", "a.txt", b"x");
    wait_until("dropped lines are counted", || {
        assert_eq!(
            get(stack.port(), "/static/a.txt").status,
            200,
            "serving goes on"
        );
        scrape(admin)
            .get("spillway_access_log_dropped_total{}")
            .is_some_and(|&n| n > 0.0)
    });
}

#[test]
fn version_names_the_build() {
    let out = support::run_cli(&["--version"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    let (name, rest) = text.trim().split_once(' ').unwrap();
    assert_eq!(name, "spillway");
    assert!(rest.starts_with("0.1.0 (") && rest.ends_with(')'), "{text}");
}
