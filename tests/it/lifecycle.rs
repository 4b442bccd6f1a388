//! The server's life as an operator sees it: reloads under load that drop nothing, a bad config
//! that changes nothing, SIGTERM letting a download finish, its private runtime dir, and the
//! limits that keep a slow or greedy client from tying it up.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{
    get, patterned, read_rest, run_cli, start_download, wait_until, Conn, Stack, StackOptions,
};

fn exited(pid: u32) -> bool {
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
        || std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2) == Some("Z"))
}

/// Clients the way browsers behave: a request on a kept-alive connection that the server
/// closed before answering is sent again on a new connection (RFC 9112 §9.3.1); a fresh
/// connection must never fail.
fn client_loop(
    port: u16,
    keep_alive: bool,
    stop: Arc<AtomicBool>,
    done: Arc<AtomicUsize>,
) -> std::thread::JoinHandle<Vec<String>> {
    std::thread::spawn(move || {
        let mut failures = Vec::new();
        let mut conn: Option<Conn> = None;
        while !stop.load(Ordering::Relaxed) {
            let status = if keep_alive {
                let reused = conn.is_some();
                let sent = conn.get_or_insert_with(|| Conn::open(port)).try_send(
                    "GET",
                    "/static/a.txt",
                    &[],
                    b"",
                );
                match sent {
                    Ok(resp) => Ok(resp.status),
                    Err(_) if reused => {
                        conn = Some(Conn::open(port));
                        conn.as_mut()
                            .map(|c| c.try_send("GET", "/static/a.txt", &[], b""))
                            .map_or(Err("no connection".to_owned()), |r| {
                                r.map(|resp| resp.status).map_err(|e| e.to_string())
                            })
                    }
                    Err(e) => Err(e.to_string()),
                }
            } else {
                support::try_request(port, "GET", "/static/a.txt", &[], b"")
                    .map(|resp| resp.status)
                    .map_err(|e| e.to_string())
            };
            match status {
                Ok(200) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(other) => failures.push(format!("status {other}")),
                Err(e) => failures.push(e),
            }
        }
        failures
    })
}

#[test]
fn a_reload_under_load_drops_nothing_and_serves_the_new_config() {
    let stack = Stack::start_with(StackOptions {
        extra_roots: &["extra"],
        ..StackOptions::default()
    });
    stack.put_local("static", "a.txt", b"small");
    stack.put_local("extra", "new.txt", b"new route");
    let big = patterned(24 << 20);
    stack.put_local("static", "big.bin", &big);
    let old = stack.proxy.pid();
    assert_eq!(
        stack.proxy.serving_pid(),
        Some(old),
        "the pid file names it"
    );
    let mode = std::fs::metadata(stack.proxy.runtime_dir())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the runtime dir is private");
    let before = get(stack.port(), "/extra/new.txt");
    assert_eq!(
        before.header("x-legacy"),
        Some("1"),
        "no such route yet: proxied"
    );

    let stop = Arc::new(AtomicBool::new(false));
    let counts: Vec<Arc<AtomicUsize>> = (0..2).map(|_| Arc::default()).collect();
    let loops: Vec<_> = [true, false]
        .into_iter()
        .zip(&counts)
        .map(|(keep_alive, done)| {
            client_loop(
                stack.port(),
                keep_alive,
                Arc::clone(&stop),
                Arc::clone(done),
            )
        })
        .collect();
    wait_until("requests before the reload", || {
        counts.iter().all(|c| c.load(Ordering::Relaxed) >= 20)
    });
    let (download, length, prefix) = start_download(stack.port(), "/static/big.bin", 1 << 20);

    let config = stack.proxy.config_path();
    let yaml = std::fs::read_to_string(&config).unwrap();
    let yaml = yaml.replace(
        "  - prefix: /static\n",
        "  - prefix: /extra\n    root: www/extra\n  - prefix: /static\n",
    );
    std::fs::write(&config, yaml).unwrap();
    let reload = run_cli(&["reload", "--config", config.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&reload.stdout);
    assert!(
        reload.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&reload.stderr)
    );
    let new = stack.proxy.serving_pid().unwrap();
    assert_ne!(new, old);
    assert_eq!(
        said.trim(),
        format!("reloaded: pid {new} serves the config now (pid {old} finishes and exits)")
    );
    // In force when it says so: every connection made from now on gets the new config (the
    // old process stopped accepting when it handed the sockets over).
    for n in 0..20 {
        assert_eq!(
            get(stack.port(), "/extra/new.txt").text(),
            "new route",
            "new connection {n} after `reload` returned"
        );
    }
    let after: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    wait_until("requests after the reload", || {
        counts
            .iter()
            .zip(&after)
            .all(|(c, &before)| c.load(Ordering::Relaxed) >= before + 50)
    });
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = loops.into_iter().flat_map(|l| l.join().unwrap()).collect();
    assert!(failures.is_empty(), "failed requests: {failures:?}");

    let body = read_rest(download, prefix);
    assert_eq!(body.len(), length);
    assert!(
        body == big,
        "the download that spanned the reload is byte-exact"
    );
    wait_until("the old process exits once drained", || exited(old));
    // A successful reload logs no error (Pingora's polls of the upgrade socket included), and
    // Pingora's start and stop narration is not in spillway's log without RUST_LOG=debug.
    let logs = stack.proxy.logs();
    assert!(
        !logs.contains(" ERROR ") && !logs.contains("No incoming socket transfer"),
        "{logs}"
    );
    assert!(
        !logs.contains("pingora_core::server: Server starting"),
        "{logs}"
    );
    assert!(
        logs.contains("spillway::server: spillway listening"),
        "{logs}"
    );
}

#[test]
fn a_route_removed_by_a_reload_is_gone_for_every_new_connection() {
    let stack = Stack::start_with(StackOptions {
        extra_roots: &["extra"],
        ..StackOptions::default()
    });
    stack.put_local("extra", "new.txt", b"local file");
    let config = stack.proxy.config_path();
    let yaml = std::fs::read_to_string(&config).unwrap();
    let with_route = yaml.replace(
        "  - prefix: /static\n",
        "  - prefix: /extra\n    root: www/extra\n  - prefix: /static\n",
    );
    std::fs::write(&config, &with_route).unwrap();
    let reload = run_cli(&["reload", "--config", config.to_str().unwrap()]);
    assert!(reload.status.success());
    assert_eq!(get(stack.port(), "/extra/new.txt").text(), "local file");
    std::fs::write(&config, &yaml).unwrap();
    let reload = run_cli(&["reload", "--config", config.to_str().unwrap()]);
    assert!(reload.status.success());
    for n in 0..20 {
        let resp = get(stack.port(), "/extra/new.txt");
        assert_eq!(
            resp.header("x-legacy"),
            Some("1"),
            "new connection {n}: the route is gone, so the path is proxied"
        );
    }
}

#[test]
fn an_invalid_config_and_a_hup_leave_the_old_process_serving() {
    let stack = Stack::start();
    stack.put_local("static", "a.txt", b"small");
    let config = stack.proxy.config_path();
    let good = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        good.replace("root: www/static", "root: www/nowhere"),
    )
    .unwrap();
    let pid = stack.proxy.pid();
    // The pid file is written once the listeners accept (polled every 10 ms), which a loaded
    // machine can put after the first connection: compare with it only once it is there.
    wait_until("the pid file names the server", || {
        stack.proxy.serving_pid() == Some(pid)
    });
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let logs = stack.proxy.wait_for_log("reload failed, still serving");
    assert!(
        logs.contains("routes[2].root: cannot open"),
        "the reason: {logs}"
    );
    assert_eq!(get(stack.port(), "/static/a.txt").text(), "small");
    assert_eq!(stack.proxy.serving_pid(), Some(pid));
    // `spillway reload` checks the config first, and sends nothing.
    let out = run_cli(&["reload", "--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("routes[2].root: cannot open"));
    assert_eq!(get(stack.port(), "/static/a.txt").text(), "small");
}

#[test]
fn sigterm_lets_a_download_in_flight_finish_and_takes_no_new_connection() {
    let stack = Stack::start();
    let big = patterned(24 << 20);
    stack.put_local("static", "big.bin", &big);
    let (download, length, prefix) = start_download(stack.port(), "/static/big.bin", 1 << 20);
    let pid = stack.proxy.pid();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    wait_until("the listener closes", || {
        TcpStream::connect(("127.0.0.1", stack.port())).is_err()
    });
    let body = read_rest(download, prefix);
    assert_eq!(body.len(), length);
    assert!(body == big, "the download finished whole");
    wait_until("the process exits once drained", || exited(pid));
    assert!(
        !stack.proxy.runtime_dir().exists(),
        "its runtime dir is cleaned up"
    );
}

#[test]
fn a_client_that_reads_nothing_of_a_proxied_response_is_dropped_at_the_send_timeout() {
    let stack = Stack::start_with(StackOptions {
        extra_top: "limits:\n  send_timeout: 1s\n".into(),
        ..StackOptions::default()
    });
    let mut stalled = TcpStream::connect(("127.0.0.1", stack.port())).unwrap();
    let started = Instant::now();
    stalled
        .write_all(b"GET /big/67108864 HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let logs = stack.proxy.wait_for_log("path=\"/big/67108864\"");
    let line = logs
        .lines()
        .find(|l| l.contains("path=\"/big/67108864\""))
        .unwrap();
    assert!(
        line.contains("outcome=\"upstream\"") && line.contains("cut_short=true"),
        "{line}"
    );
    assert!(started.elapsed() < Duration::from_secs(30));
    drop(stalled);
}

#[test]
fn the_open_files_limit_is_raised_and_running_out_is_a_503() {
    let proxy = support::Spillway::start_with_open_files(256, |port, dir| {
        std::fs::create_dir_all(dir.join("www")).unwrap();
        std::fs::write(dir.join("www/a.txt"), "small").unwrap();
        std::fs::write(dir.join("www/b.txt"), "small").unwrap();
        format!(
            "listen: \"127.0.0.1:{port}\"\nthreads: 1\nroutes:\n  - prefix: /f\n    root: www\n"
        )
    });
    let pid = proxy.pid();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect();
    assert_eq!(
        open_files[0], open_files[1],
        "soft raised to hard: {limits}"
    );
    let logs = proxy.wait_for_log("open files limit");
    assert!(logs.contains("(raised from 256)"), "{logs}");

    let mut kept = Conn::open(proxy.port);
    assert_eq!(kept.send("GET", "/f/a.txt", &[], b"").status, 200);
    // No descriptor left: the limit at the lowest free descriptor number. (a.txt stays open
    // in the open-file cache; b.txt was never opened.)
    let fds = || -> Vec<(u64, String)> {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let target = std::fs::read_link(e.path()).ok()?;
                Some((
                    e.file_name().to_str()?.parse().ok()?,
                    target.display().to_string(),
                ))
            })
            .collect()
    };
    let open: std::collections::HashSet<u64> = fds().into_iter().map(|(fd, _)| fd).collect();
    let lowest_free = (0..).find(|n| !open.contains(n)).unwrap();
    let limited = std::process::Command::new("prlimit")
        .args([
            "--pid",
            &pid.to_string(),
            &format!("--nofile={lowest_free}:{lowest_free}"),
        ])
        .status()
        .unwrap();
    assert!(limited.success());
    let resp = kept.send("GET", "/f/b.txt", &[], b"");
    assert_eq!(resp.status, 503, "{}", resp.text());
    assert_eq!(resp.header("retry-after"), Some("1"));
}

#[test]
fn max_connections_answers_one_more_with_503() {
    let stack = Stack::start_with(StackOptions {
        extra_top: "limits:\n  max_connections: 2\n".into(),
        ..StackOptions::default()
    });
    stack.put_local("static", "a.txt", b"small");
    let mut first = Conn::open(stack.port());
    let mut second = Conn::open(stack.port());
    assert_eq!(first.send("GET", "/static/a.txt", &[], b"").status, 200);
    assert_eq!(second.send("GET", "/static/a.txt", &[], b"").status, 200);
    let refused = get(stack.port(), "/static/a.txt");
    assert_eq!(refused.status, 503);
    assert_eq!(refused.header("retry-after"), Some("1"));
    drop(first);
    wait_until("a connection frees up", || {
        support::try_request(stack.port(), "GET", "/static/a.txt", &[], b"")
            .is_ok_and(|r| r.status == 200)
    });
}

#[test]
fn slow_request_heads_are_closed_and_counted_in_the_log() {
    let stack = Stack::start_with(StackOptions {
        extra_top: "limits:\n  idle_timeout: 1s\n".into(),
        ..StackOptions::default()
    });
    let mut slow = TcpStream::connect(("127.0.0.1", stack.port())).unwrap();
    slow.write_all(b"GET /static/a.txt HTTP/1.1\r\nHo").unwrap();
    let logs = stack
        .proxy
        .wait_for_log("connections closed for sending no complete request head in time");
    assert!(logs.contains("count=1"), "{logs}");
    let mut rest = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(
        slow.read_to_end(&mut rest).unwrap(),
        0,
        "closed without an answer"
    );
}
