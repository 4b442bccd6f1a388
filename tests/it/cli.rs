//! The command line: `check`, config errors, bind errors, the default command and signals.

use crate::support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{free_port, get, run_cli, wait_until, Spillway};

fn shipped_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("proxy.yaml")
        .display()
        .to_string()
}

#[test]
fn check_prints_the_compiled_routes_of_the_shipped_config() {
    let out = run_cli(&["check", "--config", &shipped_config()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "config ok:",
        "listen 127.0.0.1:8080 (2 threads)",
        "default upstream legacy at 127.0.0.1:8081",
        "route /uploads",
        "miss -> bucket media: http://127.0.0.1:9000/example-media/uploads/ (signs as minioadmin from `credentials:`)",
        "access private (ttl 5m)",
        "avatars/** -> public",
        "route /static",
        "miss -> 404 (no bucket)",
        "admin off (no `admin:`)",
        "access log text to stderr",
        "route /uploads\n  root ",
        "  offload off (no `offload:` block)\nroute /static",
        "  offload files unchanged for 10m, then delete (8 at a time, multipart from 64 MiB)\n",
    ] {
        assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
    }
    assert!(
        !stdout.contains("secret_access_key") && !stdout.contains("minioadmin\n"),
        "no secret"
    );
}

/// Runs `args` and returns its stderr, which must be all it printed, after a status of 1.
fn failure(args: &[&str]) -> String {
    let out = run_cli(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed to stdout");
    stderr
}

#[test]
fn config_errors_are_said_once_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.yaml");
    let config = config.to_str().unwrap();
    std::fs::write(
        config,
        "listen: \"127.0.0.1:0\"\nroutes:\n  - prefix: /a\n    root: .\n    tll: 5m\n",
    )
    .unwrap();
    for command in ["check", "run"] {
        assert_eq!(
            failure(&[command, "--config", config]),
            format!(
                "spillway: {config}: routes[0]: unknown field `tll`, expected one of `prefix`, \
                 `root`, `bucket`, `upstream`, `key_prefix`, `access`, `ttl`, `sign_window`, \
                 `content_disposition`, `redirect_max_age`, `rules`, `index`, `precompressed`, \
                 `cache_control`, `dotfiles`, `symlinks`, `offload`, `authorize`, `shadow`, `cors`, `limits`, `compress` at line 5 \
                 column 5\n"
            ),
            "{command}"
        );
    }
    std::fs::write(config, "listen: \"127.0.0.1:0\"\nroutes: [\n").unwrap();
    assert_eq!(
        failure(&["check", "--config", config]),
        format!(
            "spillway: {config}: did not find expected node content at line 3 column 1, \
             while parsing a flow node\n"
        )
    );
    assert_eq!(
        failure(&["check", "--config", "/nonexistent/proxy.yaml"]),
        "spillway: cannot read /nonexistent/proxy.yaml: No such file or directory (os error 2)\n"
    );
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::create_dir(dir.path().join("www")).unwrap();
    // What `run` says with these top-level lines and one route.
    let run = |top: String| {
        std::fs::write(
            &config,
            format!("{top}routes:\n  - prefix: /a\n    root: www\n"),
        )
        .unwrap();
        failure(&["run", "--config", config.to_str().unwrap()])
    };
    assert_eq!(
        run(format!("listen: \"127.0.0.1:{port}\"\n")),
        format!(
            "spillway: cannot listen on 127.0.0.1:{port}: Address already in use (os error 98)\n"
        )
    );
    // The admin listener too (Pingora would only log it, and the server would never be ready).
    let free = support::free_port();
    assert_eq!(
        run(format!("listen: \"127.0.0.1:{free}\"\nadmin: \"127.0.0.1:{port}\"\n")),
        format!(
            "spillway: cannot listen on 127.0.0.1:{port} for /metrics, /healthz and /readyz (`admin:`): Address already in use (os error 98)\n"
        )
    );
    let port_zero = "spillway: cannot listen on 127.0.0.1:0: port 0 would be a different port at every start and reload; give a port\n";
    assert_eq!(run("listen: \"127.0.0.1:0\"\n".to_owned()), port_zero);
    // `reload` says it at once, rather than after waiting for a new process that exits.
    let reload = failure(&["reload", "--config", config.to_str().unwrap()]);
    assert_eq!(reload, port_zero);
}

/// Without a command, `spillway` runs `proxy.yaml` from the current directory, or the file
/// `--config` names.
#[test]
fn no_command_runs_the_config() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/hi.txt"), "hi").unwrap();
    for (file, args) in [
        ("proxy.yaml", &[][..]),
        ("site.yaml", &["--config", "site.yaml"][..]),
    ] {
        // A port handed out here may be taken by another test's listener before the child
        // binds it: then the child says so, and another port is tried.
        let (mut child, port) = (0..3)
            .find_map(|_| {
                let port = free_port();
                std::fs::write(
                    dir.path().join(file),
                    format!("listen: \"127.0.0.1:{port}\"\nthreads: 1\nroutes:\n  - prefix: /files\n    root: www\n"),
                )
                .unwrap();
                let child = Command::new(env!("CARGO_BIN_EXE_spillway"))
                    .args(args)
                    .current_dir(dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                listening(child, port).map(|child| (child, port))
            })
            .expect("three ports in a row were taken");
        let resp = get(port, "/files/hi.txt");
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(
            (resp.status, resp.body.as_slice()),
            (200, &b"hi"[..]),
            "{args:?}"
        );
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
}

/// Waits until `child` itself listens on `port` (a connect could reach another test's
/// listener there); `None` when it exited because the port was taken.
fn listening(mut child: std::process::Child, port: u16) -> Option<std::process::Child> {
    let mut exited = None;
    wait_until("spillway listens", || {
        if let Ok(Some(status)) = child.try_wait() {
            let mut said = String::new();
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut said);
            assert!(
                said.contains("Address already in use"),
                "spillway exited ({status}): {said}"
            );
            exited = Some(said);
            return true;
        }
        support::process_listens_on(child.id(), port)
    });
    exited.is_none().then_some(child)
}

/// Sends `signal` and returns how long the process took to exit.
fn stop_with(signal: &str) -> (Duration, String) {
    let mut proxy = Spillway::start_with(|port| {
        format!("listen: \"127.0.0.1:{port}\"\nthreads: 1\nshutdown:\n  grace_period: 1s\n  timeout: 1s\nroutes:\n  - prefix: /a\n    root: .\n")
    });
    assert_eq!(
        get(proxy.port, "/a/config.yaml").status,
        200,
        "serving before the signal"
    );
    let sent = Instant::now();
    let killed = Command::new("kill")
        .args([signal, &proxy.pid().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = sent + Duration::from_secs(15);
    loop {
        if proxy.try_wait().is_some() {
            return (sent.elapsed(), proxy.logs());
        }
        assert!(
            Instant::now() < deadline,
            "still running 15s after {signal}:\n{}",
            proxy.logs()
        );
        std::thread::sleep(Duration::from_millis(20)); // polling an exit, not synchronising
    }
}

#[test]
fn sigterm_stops_gracefully_within_the_configured_grace() {
    let (took, logs) = stop_with("-TERM");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} with a 1s grace period:\n{logs}"
    );
    assert!(logs.contains("SIGTERM"), "{logs}");
}

#[test]
fn sigint_stops_at_once() {
    let (took, logs) = stop_with("-INT");
    assert!(took < Duration::from_secs(3), "took {took:?}:\n{logs}");
}

/// `2026-11-23T09:15:00Z` from an `X-Amz-Date` of `20261123T091500Z`.
fn rfc3339_of_amz_date(location: &str) -> String {
    let stamp = location
        .split("X-Amz-Date=")
        .nth(1)
        .and_then(|rest| rest.get(..16))
        .expect("X-Amz-Date in the Location");
    format!(
        "{}-{}-{}T{}:{}:{}Z",
        &stamp[0..4],
        &stamp[4..6],
        &stamp[6..8],
        &stamp[9..11],
        &stamp[11..13],
        &stamp[13..15]
    )
}

#[test]
fn explain_reproduces_the_servers_location_exactly() {
    let stack = support::Stack::start();
    let config = stack.proxy.config_path();
    let config = config.to_str().unwrap();
    for (method, target) in [
        ("GET", "/uploads/reports/Q1%20(final)%2B.pdf"),
        ("HEAD", "/uploads/caf%C3%A9.txt"),
    ] {
        let resp = support::request(stack.port(), method, target, &[], b"");
        assert_eq!(resp.status, 302);
        let served = resp.header("location").unwrap();
        let at = rfc3339_of_amz_date(served);
        let out = run_cli(&[
            "explain", "--config", config, "--method", method, "--at", &at, "--json", target,
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("explain --json prints JSON");
        assert_eq!(json["location"].as_str(), Some(served), "{method} {target}");
        assert_eq!(json["outcome"], "presigned");
        assert_eq!(json["status"], 302);
        assert_eq!(json["access"], "private");
        assert_eq!(json["route"], "/uploads");
        assert_eq!(json["cache_control"].as_str(), resp.header("cache-control"));
        assert!(json["key"].as_str().unwrap().starts_with("uploads/"));
        assert_eq!(json["exists"], false);
    }
}

#[test]
fn explain_names_every_outcome() {
    let stack = support::Stack::start();
    stack.put_local("uploads", "here.txt", b"x");
    let config = stack.proxy.config_path();
    let config = config.to_str().unwrap();
    let cases = [
        ("GET", "/uploads/here.txt", "served", Some(200)),
        ("GET", "/uploads/avatars/me.png", "redirect", Some(302)),
        ("POST", "/uploads/here.txt", "upstream", None),
        ("GET", "/forum/index.php", "upstream", None),
        ("GET", "/uploads/a%2fb", "rejected", Some(400)),
        ("GET", "/static/missing.css", "rejected", Some(404)),
    ];
    for (method, target, outcome, status) in cases {
        let out = run_cli(&[
            "explain", "--config", config, "--method", method, "--json", target,
        ]);
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(json["outcome"], outcome, "{method} {target}");
        assert_eq!(
            json["status"].as_u64().map(|s| s as u16),
            status,
            "{method} {target}"
        );
        // The text form says the same.
        let text = run_cli(&["explain", "--config", config, "--method", method, target]);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains(&format!("outcome       {outcome}")), "{text}");
    }
}

#[test]
fn a_malformed_explain_header_or_cookie_is_named() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.yaml");
    assert_eq!(
        failure(&["explain", "--config", config, "--header", "no colon", "/x"]),
        "spillway: --header \"no colon\": expected `Name: value`\n"
    );
    assert_eq!(
        failure(&["explain", "--config", config, "--cookie", "a\u{1}", "/x"]),
        "spillway: --cookie \"a\\u{1}\": not a header value\n"
    );
}

#[test]
fn check_shows_everything_the_config_sets_and_warns_of_a_certificate_near_its_end() {
    let dir = tempfile::tempdir().unwrap();
    let (_, lasting) = support::certificate(dir.path(), "lasting", &["files.example.com"]);
    let (_, ending) = support::certificate_expiring(dir.path(), "ending", &["old.example.com"], 5);
    std::fs::create_dir(dir.path().join("www")).unwrap();
    let config = dir.path().join("edge.yaml");
    std::fs::write(
        &config,
        format!(
            r#"listen:
  - address: "127.0.0.1:8443"
    tls: {{ cert: {}, key: {} }}
  - address: "127.0.0.1:9443"
    tls: {{ cert: {}, key: {} }}
admin: "127.0.0.1:9901"
access_log: {{ format: json, path: stdout }}
upstreams:
  app: {{ address: "127.0.0.1:8081" }}
default_upstream: app
buckets:
  media:
    bucket: media
    region: us-east-1
    credentials: {{ access_key_id: AKID, secret_access_key: SK }}
routes:
  - prefix: /private
    root: www
    bucket: media
    authorize: {{ upstream: app, path: /check, forward: [cookie], timeout: 2s }}
  - prefix: /trial
    root: www
    bucket: media
    shadow: true
"#,
            lasting.cert.display(),
            lasting.key.display(),
            ending.cert.display(),
            ending.key.display(),
        ),
    )
    .unwrap();
    let out = run_cli(&["check", "--config", &config.display().to_string()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.starts_with(&format!("config ok: {}\n", config.display())),
        "{stdout}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let cert = |name: &str| {
        lines
            .iter()
            .find(|l| l.starts_with(&format!("  certificate {name}: ")))
            .unwrap_or_else(|| panic!("no certificate line for {name}:\n{stdout}"))
            .to_string()
    };
    let lasting_line = cert("files.example.com");
    assert!(
        lasting_line
            .contains(": issuer CN=spillway test CA lasting; expires 4096-01-01T00:00:00Z ("),
        "{lasting_line}"
    );
    let ending_line = cert("old.example.com");
    assert!(
        ending_line.contains(": issuer CN=spillway test CA ending; expires ")
            && (ending_line.ends_with("(4 days left)") || ending_line.ends_with("(5 days left)")),
        "{ending_line}"
    );
    assert!(
        stdout.contains("  warning: the certificate for old.example.com expires in "),
        "{stdout}"
    );
    assert!(
        !stdout.contains("warning: the certificate for files.example.com"),
        "{stdout}"
    );
    for want in [
        "listen 127.0.0.1:8443 TLS (h2, http/1.1) (",
        "admin 127.0.0.1:9901: /metrics, /healthz, /readyz\n",
        "access log json to stdout\n",
        "default upstream app at 127.0.0.1:8081\n",
        "  authorize GET app (127.0.0.1:8081) /check forwarding cookie, for presigned redirects; timeout 2s, answers kept 0s\n",
        "route /trial\n",
        "  shadow: every request goes upstream; spillway logs what it would have done:\n  would: miss -> bucket media: ",
    ] {
        assert!(stdout.contains(want), "{want:?} in:\n{stdout}");
    }
}

#[test]
fn completions_a_man_page_and_help_that_names_the_signals_and_rust_log() {
    for (shell, marker) in [
        ("bash", "_spillway()"),
        ("zsh", "#compdef spillway"),
        ("fish", "complete -c spillway"),
    ] {
        let out = run_cli(&["completions", shell]);
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shell}");
        assert!(script.contains(marker), "{shell}: {script}");
        assert!(
            script.contains("offload") && script.contains("bwlimit"),
            "{shell}"
        );
    }
    let man = run_cli(&["man"]);
    let page = String::from_utf8_lossy(&man.stdout);
    assert!(page.contains(".TH spillway 1"), "{page}");
    assert!(page.contains("reload") && page.contains("SIGHUP"), "{page}");
    let help = run_cli(&["--help"]);
    let text = String::from_utf8_lossy(&help.stdout);
    for signal in ["SIGHUP", "SIGTERM", "SIGINT", "SIGUSR1", "RUST_LOG"] {
        assert!(text.contains(signal), "{signal} in:\n{text}");
    }
}

#[test]
fn explain_refuses_a_path_without_its_leading_slash_as_the_server_would() {
    let out = run_cli(&["explain", "--config", &shipped_config(), "uploads/a.jpg"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "spillway: \"uploads/a.jpg\" is not a request path: a request path starts with '/', as a client sends it (e.g. /uploads/a%20b.jpg)\n"
    );
}
