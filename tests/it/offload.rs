//! `spillway offload` against a real S3 server (s3s-fs, verifying signatures and checksums),
//! with the real proxy answering for the moved files afterwards.

use crate::support;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{
    follow, get, run_cli, wait_until, wait_until_none_left, Gate, S3Server, Spillway, ACCESS_KEY,
    SECRET_KEY,
};

/// A bucket, a proxy in front of `www/` (route `/uploads`, key prefix `uploads/`, private),
/// and the config both the proxy and `offload` read.
struct Site {
    s3: S3Server,
    proxy: Spillway,
}

impl Site {
    /// `offload` is the route's `offload:` block, indented by 6 spaces.
    fn new(offload: &str) -> Site {
        Site::with(S3Server::start(ACCESS_KEY, SECRET_KEY), SECRET_KEY, offload)
    }

    fn with(s3: S3Server, secret: &str, offload: &str) -> Site {
        s3.create_bucket("media");
        let endpoint = s3.endpoint();
        let proxy = Spillway::start_custom(&[], |port, dir| {
            std::fs::create_dir_all(dir.join("www")).expect("www");
            std::fs::create_dir_all(dir.join("archive")).expect("archive");
            format!(
                r#"listen: "127.0.0.1:{port}"
threads: 1
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "{secret}"
routes:
  - prefix: /uploads
    root: www
    bucket: media
    key_prefix: uploads/
    cache_control: "public, max-age=60"
    offload:
{offload}
"#
            )
        });
        Site { s3, proxy }
    }

    fn www(&self) -> PathBuf {
        self.proxy.spillway_dir().join("www")
    }

    fn put(&self, relative: &str, bytes: &[u8]) -> PathBuf {
        let path = self.www().join(relative);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn config(&self) -> String {
        self.proxy.config_path().display().to_string()
    }

    /// `spillway offload --config <this site> <args>`.
    fn offload(&self, args: &[&str]) -> Run {
        let config = self.config();
        let mut all = vec!["offload", "--config", config.as_str()];
        all.extend_from_slice(args);
        Run::of(run_cli(&all))
    }

    /// The object's bytes as s3s-fs stores them.
    fn object(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.s3.root.path().join("media").join(key)).ok()
    }
}

/// What a run printed and how it ended.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(out: Output) -> Run {
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The line about `path` (a URL path), which must be there.
    /// Lines are `<what, 10 wide> <path>[: why | (size) | -> key]`.
    fn line(&self, path: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| {
                l.get(11..).is_some_and(|rest| {
                    rest == path
                        || rest.starts_with(&format!("{path}:"))
                        || rest.starts_with(&format!("{path} "))
                })
            })
            .unwrap_or_else(|| panic!("no line for {path}:\n{}\n{}", self.stdout, self.stderr))
    }

    fn summary(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("offload"))
            .unwrap_or_else(|| panic!("no summary:\n{}\n{}", self.stdout, self.stderr))
    }

    fn assert_code(&self, code: i32) {
        assert_eq!(
            self.code,
            Some(code),
            "exit status\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
    }
}

fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// Names that break naive scripts: they must land at the keys the proxy redirects to.
const AWKWARD: &[&str] = &[
    "a b.txt",
    "plus+sign.txt",
    "100%.txt",
    "caf\u{e9}.txt",
    "cafe\u{301}.txt",
    "hash#tag.txt",
    "what?.txt",
    "dir/sub/deep.txt",
    "\u{65e5}\u{672c}.txt",
];

fn encode(relative: &str) -> String {
    support::encode_key(relative)
}

#[test]
fn moved_files_are_redirected_to_and_served_from_their_keys() {
    let site = Site::new("      min_age: 10m");
    for (i, name) in AWKWARD.iter().enumerate() {
        site.put(name, format!("file {i}: {name}").as_bytes());
    }
    let run = site.offload(&["--min-age", "0s"]);
    run.assert_code(0);
    assert!(
        run.summary()
            .starts_with(&format!("offload: {} uploaded", AWKWARD.len())),
        "{}",
        run.summary()
    );
    for (i, name) in AWKWARD.iter().enumerate() {
        let bytes = format!("file {i}: {name}").into_bytes();
        assert!(!site.www().join(name).exists(), "{name} still on disk");
        assert_eq!(
            site.object(&format!("uploads/{name}")).as_deref(),
            Some(&bytes[..]),
            "object for {name}"
        );
        let path = format!("/uploads/{}", encode(name));
        assert!(
            run.line(&path).starts_with("uploaded"),
            "{}",
            run.line(&path)
        );
        // The proxy now redirects, and the presigned link returns the original bytes, with
        // the type and cache control the proxy would have sent.
        let redirect = get(site.proxy.port, &path);
        assert_eq!(redirect.status, 302, "{path}");
        let object = follow(redirect.header("location").unwrap(), "GET");
        assert_eq!(object.status, 200, "{path}: {}", object.text());
        assert_eq!(object.body, bytes, "{path}");
        assert_eq!(
            object.header("content-type"),
            Some("text/plain; charset=utf-8")
        );
        assert_eq!(object.header("cache-control"), Some("public, max-age=60"));
    }
    // A second run finds nothing left to do.
    let again = site.offload(&["--min-age", "0s"]);
    again.assert_code(0);
    assert!(
        again.summary().starts_with("offload: 0 uploaded"),
        "{}",
        again.summary()
    );
}

#[test]
fn a_large_file_goes_up_in_parts_and_is_verified_by_its_multipart_etag() {
    let site = Site::new("      multipart_threshold: 5MiB");
    let bytes = patterned(21 << 20);
    site.put("video/big.bin", &bytes);
    let run = site.offload(&["--min-age", "0s"]);
    run.assert_code(0);
    assert!(run.line("/uploads/video/big.bin").starts_with("uploaded"));
    assert!(!site.www().join("video/big.bin").exists());
    assert!(site.object("uploads/video/big.bin") == Some(bytes.clone()));
    // s3s-fs keeps no checksum for a multipart object, only its ETag: "<md5 of MD5s>-3".
    let sidecars: Vec<String> = std::fs::read_dir(site.s3.root.path())
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter(|text| text.contains("e_tag"))
        .collect();
    assert!(
        sidecars.iter().any(|t| t.contains("-3")),
        "a 3-part ETag: {sidecars:?}"
    );
}

#[test]
fn a_file_appended_during_its_upload_is_kept_and_its_upload_withdrawn() {
    let gate = Gate::new("PUT", "growing.log");
    let s3 = S3Server::start_gated(ACCESS_KEY, SECRET_KEY, &gate);
    let site = Site::with(s3, SECRET_KEY, "      min_age: 10m");
    let path = site.put("growing.log", b"first line\n");
    let config = site.config();
    let run = std::thread::spawn(move || {
        Run::of(run_cli(&[
            "offload",
            "--config",
            &config,
            "--min-age",
            "0s",
        ]))
    });
    gate.wait_held();
    std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, b"second line\n"))
        .unwrap();
    gate.open();
    let run = run.join().unwrap();
    run.assert_code(1);
    assert!(
        run.line("/uploads/growing.log")
            .contains("changed after the upload began"),
        "{}",
        run.line("/uploads/growing.log")
    );
    assert_eq!(std::fs::read(&path).unwrap(), b"first line\nsecond line\n");
    assert_eq!(site.object("uploads/growing.log"), None, "upload withdrawn");
}

#[test]
fn young_files_dotfiles_fifos_and_links_out_of_the_root_stay() {
    let site = Site::new("      min_age: 10m");
    site.put("fresh.txt", b"just written");
    site.put(".env", b"SECRET=1");
    site.put(".git/config", b"[core]");
    let fifo = site.www().join("pipe");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let outside = site.proxy.spillway_dir().join("outside.txt");
    std::fs::write(&outside, b"outside the root").unwrap();
    symlink(&outside, site.www().join("escape.txt")).unwrap();
    symlink("../outside.txt", site.www().join("relative-escape.txt")).unwrap();

    let run = site.offload(&[]);
    run.assert_code(0);
    assert!(run
        .line("/uploads/fresh.txt")
        .contains("changed too recently"));
    assert!(run.line("/uploads/.env").ends_with("dotfile"));
    assert!(run.line("/uploads/.git").ends_with("dotfile"));
    assert!(run.line("/uploads/pipe").ends_with("not a regular file"));
    assert!(run.line("/uploads/escape.txt").ends_with("symlink"));
    assert!(run
        .line("/uploads/relative-escape.txt")
        .ends_with("symlink"));
    for name in [
        "fresh.txt",
        ".env",
        ".git/config",
        "escape.txt",
        "relative-escape.txt",
    ] {
        assert!(site.www().join(name).exists(), "{name} kept");
        assert_eq!(
            site.object(&format!("uploads/{name}")),
            None,
            "{name} not uploaded"
        );
    }
    assert_eq!(site.object("uploads/pipe"), None);
    assert_eq!(std::fs::read(&outside).unwrap(), b"outside the root");
}

#[test]
fn a_wrong_secret_deletes_nothing_and_says_why() {
    let site = Site::with(
        S3Server::start(ACCESS_KEY, SECRET_KEY),
        "not-the-secret",
        "      concurrency: 1",
    );
    for name in ["a.txt", "b.txt", "c.txt"] {
        site.put(name, name.as_bytes());
    }
    let run = site.offload(&["--min-age", "0s"]);
    run.assert_code(1);
    assert!(
        run.stdout
            .contains("the S3 credentials are not accepted (403 SignatureDoesNotMatch): the secret key does not match the access key id"),
        "{}",
        run.stdout
    );
    for name in ["a.txt", "b.txt", "c.txt"] {
        assert!(site.www().join(name).exists(), "{name} kept");
    }
    assert!(run
        .stdout
        .contains("stopping   S3 refuses the credentials: no other file is tried"));
    assert_eq!(
        run.stderr.lines().last(),
        Some("spillway: 1 failed and 0 conflicted; their local files were kept"),
        "the run stops at credentials S3 refuses: {}",
        run.stderr
    );
}

#[test]
fn the_s3_server_stopping_mid_run_keeps_every_file_not_proven() {
    let gate = Gate::new("PUT", "/media/uploads/hold.txt");
    let s3 = S3Server::start_gated(ACCESS_KEY, SECRET_KEY, &gate);
    let site = Site::with(s3, SECRET_KEY, "      concurrency: 1");
    let names = ["a.txt", "b.txt", "hold.txt", "c.txt", "d.txt"];
    for name in names {
        site.put(name, name.as_bytes());
    }
    let config = site.config();
    let run = std::thread::spawn(move || {
        Run::of(run_cli(&[
            "offload",
            "--config",
            &config,
            "--min-age",
            "0s",
        ]))
    });
    gate.wait_held();
    let Site { s3, proxy } = site;
    drop(s3);
    let run = run.join().unwrap();
    run.assert_code(1);
    assert!(run.line("/uploads/hold.txt").starts_with("failed"));
    for name in names {
        let path = format!("/uploads/{name}");
        let line = run
            .stdout
            .lines()
            .find(|l| l.get(11..).is_some_and(|rest| rest.starts_with(&path)));
        let on_disk = proxy.spillway_dir().join("www").join(name).exists();
        match line {
            Some(l) if l.starts_with("uploaded") => assert!(!on_disk, "{name}: {l}"),
            Some(l) => assert!(on_disk && l.starts_with("failed"), "{name}: {l}"),
            None => assert!(on_disk, "{name} not tried, so kept"),
        }
    }
}

#[test]
fn an_object_with_other_bytes_is_a_conflict_and_one_with_the_same_bytes_is_reused() {
    let site = Site::new("      min_age: 10m");
    site.put("taken.txt", b"local bytes");
    site.s3
        .put_object("media", "uploads/taken.txt", b"other bytes");
    site.put("same.txt", b"identical");
    site.s3
        .put_object("media", "uploads/same.txt", b"identical");
    let run = site.offload(&["--min-age", "0s"]);
    // Conflicts alone: exit status 2.
    run.assert_code(2);
    assert!(
        run.line("/uploads/taken.txt").starts_with(
            "conflict   /uploads/taken.txt: s3://media/uploads/taken.txt already holds other bytes"
        ),
        "{}",
        run.line("/uploads/taken.txt")
    );
    assert!(site.www().join("taken.txt").exists());
    assert_eq!(site.object("uploads/taken.txt").unwrap(), b"other bytes");
    assert!(run.line("/uploads/same.txt").starts_with("exists"));
    assert!(!site.www().join("same.txt").exists(), "proven, so removed");
    assert!(
        run.summary().contains("1 conflicts, 0 failed"),
        "{}",
        run.summary()
    );
}

#[test]
fn dry_run_changes_nothing_and_names_the_keys() {
    let site = Site::new("      min_age: 10m");
    site.put("a b.txt", b"x");
    let run = site.offload(&["--dry-run", "--min-age", "0s"]);
    run.assert_code(0);
    assert_eq!(
        run.line("/uploads/a%20b.txt"),
        "would move /uploads/a%20b.txt -> s3://media/uploads/a b.txt (1 B)"
    );
    assert!(run
        .summary()
        .starts_with("offload --dry-run: 1 would move (1 B), nothing was changed"));
    assert!(site.www().join("a b.txt").exists());
    assert_eq!(site.object("uploads/a b.txt"), None);
}

#[test]
fn archive_moves_the_file_aside_and_keep_leaves_it() {
    let site = Site::new("      min_age: 0s\n      after: archive\n      archive: archive");
    site.put("docs/report.pdf", b"%PDF");
    let run = site.offload(&[]);
    run.assert_code(0);
    let archived = site.proxy.spillway_dir().join("archive/docs/report.pdf");
    assert!(run.line("/uploads/docs/report.pdf").contains("archived to"));
    assert_eq!(std::fs::read(&archived).unwrap(), b"%PDF");
    assert!(!site.www().join("docs/report.pdf").exists());
    assert_eq!(site.object("uploads/docs/report.pdf").unwrap(), b"%PDF");

    let kept = Site::new("      min_age: 0s\n      after: keep");
    kept.put("k.txt", b"kept");
    let first = kept.offload(&[]);
    first.assert_code(0);
    assert!(
        first.line("/uploads/k.txt").ends_with(", kept"),
        "{}",
        first.line("/uploads/k.txt")
    );
    assert!(kept.www().join("k.txt").exists());
    assert_eq!(kept.object("uploads/k.txt").unwrap(), b"kept");
    let second = kept.offload(&[]);
    second.assert_code(0);
    assert!(second.line("/uploads/k.txt").starts_with("exists"));
}

#[test]
fn watch_moves_files_as_they_arrive_and_stops_cleanly_on_sigterm() {
    let site = Site::new("      min_age: 0s");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["offload", "--watch", "--config", &site.config()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let path = site.put("new/arrival.txt", b"fresh upload");
    wait_until("the new file offloaded", || {
        site.object("uploads/new/arrival.txt").is_some() && !path.exists()
    });
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let out = child_output(&mut child);
    out.assert_code(0);
    assert!(out.line("/uploads/new/arrival.txt").starts_with("uploaded"));
    assert!(
        out.summary().starts_with("offload: 1 uploaded"),
        "{}",
        out.summary()
    );
}

fn child_output(child: &mut std::process::Child) -> Run {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "offload --watch did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut stdout = String::new();
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    Run {
        code: child.try_wait().unwrap().and_then(|s| s.code()),
        stdout,
        stderr,
    }
}

#[test]
fn routes_are_chosen_by_prefix_and_checked() {
    let site = Site::new("      min_age: 0s\n      after: keep");
    site.put("a.txt", b"a");
    let run = site.offload(&["--route", "/nope"]);
    run.assert_code(3);
    assert_eq!(
        run.stderr,
        "spillway: no route /nope in the config (routes: /uploads)\n"
    );
    assert_eq!(site.object("uploads/a.txt"), None);
    let run = site.offload(&["--route", "/uploads/"]);
    run.assert_code(0);
    assert_eq!(site.object("uploads/a.txt").unwrap(), b"a");
}

#[test]
fn a_file_an_interrupted_run_set_aside_is_put_back() {
    let site = Site::new("      min_age: 0s\n      after: keep");
    site.put(".spillway-offload.report.pdf", b"%PDF");
    let run = site.offload(&[]);
    run.assert_code(0);
    assert!(
        run.stdout
            .contains("restored   /uploads/report.pdf: an interrupted run had set it aside"),
        "{}",
        run.stdout
    );
    assert_eq!(
        std::fs::read(site.www().join("report.pdf")).unwrap(),
        b"%PDF"
    );
    assert!(!site.www().join(".spillway-offload.report.pdf").exists());
}

// ---------------------------------------------------------------------------
// The daemon and the fleet: opt-in, every route at once, cooperation, machines
// ---------------------------------------------------------------------------

/// A site with two routes, `/uploads` (root `www`) and `/photos` (root `photos`), both with
/// `offload:` blocks, and `/static` (root `static`) with a bucket but none.
fn two_routes(s3: S3Server, offload: &str) -> Site {
    s3.create_bucket("media");
    let endpoint = s3.endpoint();
    let proxy = Spillway::start_custom(&[], |port, dir| {
        for sub in ["www", "photos", "static"] {
            std::fs::create_dir_all(dir.join(sub)).expect("root");
        }
        format!(
            r#"listen: "127.0.0.1:{port}"
threads: 1
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "{endpoint}"
    credentials:
      access_key_id: "{ACCESS_KEY}"
      secret_access_key: "{SECRET_KEY}"
routes:
  - prefix: /uploads
    root: www
    bucket: media
    key_prefix: uploads/
    offload:
{offload}
  - prefix: /photos
    root: photos
    bucket: media
    key_prefix: photos/
    offload:
{offload}
  - prefix: /static
    root: static
    bucket: media
    key_prefix: static/
"#
        )
    });
    Site { s3, proxy }
}

/// `offload --watch` running, its output read as it comes.
struct Daemon {
    child: std::process::Child,
    stdout: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    reader: std::thread::JoinHandle<()>,
    /// stderr is drained as it comes too: a full pipe would stop the daemon.
    stderr: std::thread::JoinHandle<String>,
}

impl Daemon {
    fn start(site: &Site, args: &[&str]) -> Daemon {
        let config = site.config();
        let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
            .args(["offload", "--watch", "--config", &config])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = std::sync::Arc::clone(&stdout);
        let out = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                lines.lock().unwrap().push(line);
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut err, &mut text);
            text
        });
        Daemon {
            child,
            stdout,
            reader,
            stderr,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    fn wait_for_line(&self, what: &str) {
        wait_until(&format!("a line {what:?}"), || {
            self.lines().iter().any(|l| l == what)
        });
    }

    /// User and system CPU time so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // The fields after the command name, which is in parentheses.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    /// SIGTERM, then what it printed and how it ended.
    fn stop(mut self) -> (Option<i32>, Vec<String>, String) {
        let killed = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let status = self.child.wait().unwrap();
        let stderr = self.stderr.join().unwrap();
        // The reader thread has the rest once the pipe closes.
        self.reader.join().unwrap();
        let lines = self.stdout.lock().unwrap().clone();
        (status.code(), lines, stderr)
    }
}

#[test]
fn watch_is_quiet_when_idle_says_a_skip_once_and_moves_files_of_every_route() {
    let site = two_routes(S3Server::start(ACCESS_KEY, SECRET_KEY), "      min_age: 0s");
    site.put(".hidden", b"secret");
    site.put("sub/deeper/.env", b"KEY=1");
    std::fs::create_dir_all(site.www().join("empty/dir")).unwrap();
    let admin = support::free_port();
    let daemon = Daemon::start(&site, &["--admin", &format!("127.0.0.1:{admin}")]);
    daemon.wait_for_line("skipped    /uploads/sub/deeper/.env: dotfile");
    daemon.wait_for_line(&format!(
        "watching   /photos ({})",
        site.proxy.spillway_dir().join("photos").display()
    ));
    let settled = daemon.cpu_ticks();
    // Events that move nothing: the dotfiles change, a directory is created and listed.
    site.put(".hidden", b"secret, changed");
    site.put("sub/deeper/.env", b"KEY=2");
    std::fs::create_dir_all(site.www().join("new/empty")).unwrap();
    let _ = std::fs::read_dir(site.www().join("sub")).unwrap().count();
    // The second route is watched too, at the same time.
    let photo = site.proxy.spillway_dir().join("photos/2026/cat.jpg");
    std::fs::create_dir_all(photo.parent().unwrap()).unwrap();
    std::fs::write(&photo, b"meow").unwrap();
    wait_until("the photo offloaded", || {
        site.object("photos/2026/cat.jpg").is_some() && !photo.exists()
    });
    let marker = site.put("marker.txt", b"last");
    wait_until("the marker offloaded", || {
        site.object("uploads/marker.txt").is_some() && !marker.exists()
    });
    let busy = daemon.cpu_ticks() - settled;
    // One full walk per route; a walk below each directory that appeared (new/, new/empty/,
    // 2026/), and none caused by the walks' own opens.
    let metrics = get(admin, "/metrics").text();
    let walks = |route: &str, kind: &str| {
        let line = format!("spillway_offload_walks_total{{kind=\"{kind}\",route=\"{route}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    assert_eq!(walks("/uploads", "full"), 1, "{metrics}");
    assert_eq!(walks("/photos", "full"), 1, "{metrics}");
    assert!(walks("/uploads", "directory") <= 2, "{metrics}");
    assert!(walks("/photos", "directory") <= 1, "{metrics}");
    let (code, lines, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{lines:?}\n{stderr}");
    // A file noticed by its event waits for min_age (and says so); one found by the walk of
    // its new directory is looked at at once.
    let said: Vec<&str> = lines
        .iter()
        .map(String::as_str)
        .filter(|l| {
            !l.starts_with("watching")
                && !l.starts_with("admin")
                && !l.starts_with("offload:")
                && *l != "waiting    /photos/2026/cat.jpg: moves in 1s if it stays unchanged"
        })
        .collect();
    assert_eq!(
        said,
        [
            "skipped    /uploads/.hidden: dotfile",
            "skipped    /uploads/sub/deeper/.env: dotfile",
            "uploaded   /photos/2026/cat.jpg (4 B), deleted",
            "waiting    /uploads/marker.txt: moves in 1s if it stays unchanged",
            "uploaded   /uploads/marker.txt (4 B), deleted",
        ],
        "each skip said once, nothing said for events that move nothing; stderr: {stderr}"
    );
    // It spun at a whole core when a walk's own directory opens counted as changes; now a
    // few dozen events cost a few ticks (100 a second of CPU).
    assert!(busy < 50, "{busy} ticks of CPU for a few events");
    assert!(site.www().join(".hidden").exists());
    assert!(site.www().join("sub/deeper/.env").exists());
}

#[test]
fn only_routes_with_an_offload_block_are_touched() {
    let site = two_routes(S3Server::start(ACCESS_KEY, SECRET_KEY), "      min_age: 0s");
    let untouched = site.proxy.spillway_dir().join("static/site.css");
    std::fs::write(&untouched, b"body {}").unwrap();
    site.put("a.txt", b"a");
    let run = site.offload(&[]);
    run.assert_code(0);
    assert!(run.line("/uploads/a.txt").starts_with("uploaded"));
    assert!(untouched.exists());
    assert!(!run.stdout.contains("/static/"), "{}", run.stdout);
    assert_eq!(site.object("static/site.css"), None);
    let named = site.offload(&["--route", "/static"]);
    named.assert_code(3);
    assert_eq!(
        named.stderr,
        "spillway: route /static has no `offload:` block, so offload never touches its files; add one to the route to move them (an empty `offload: {}` takes the defaults)\n"
    );
    assert!(untouched.exists());
    let check = run_cli(&["check", "--config", &site.config()]);
    let text = String::from_utf8_lossy(&check.stdout);
    assert!(
        text.contains("route /static\n") && text.contains("  offload off (no `offload:` block)\n"),
        "{text}"
    );
    assert!(
        text.contains("  offload files unchanged for 0s, then delete"),
        "{text}"
    );
}

#[test]
fn three_runs_at_once_move_every_file_once_and_exit_0() {
    let site = Site::new("      min_age: 0s\n      concurrency: 4");
    let names: Vec<String> = (0..60).map(|i| format!("d{}/f{i}.txt", i % 5)).collect();
    for name in &names {
        site.put(name, name.as_bytes());
    }
    let config = site.config();
    let runs: Vec<_> = (0..3)
        .map(|_| {
            let config = config.clone();
            std::thread::spawn(move || {
                Run::of(run_cli(&["offload", "--config", &config, "--json"]))
            })
        })
        .collect();
    let runs: Vec<Run> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    let mut moved = std::collections::HashMap::<String, usize>::new();
    for run in &runs {
        run.assert_code(0);
        for line in run.stdout.lines() {
            let object: serde_json::Value = serde_json::from_str(line).unwrap();
            if object["type"] != "file" {
                continue;
            }
            let outcome = object["outcome"].as_str().unwrap();
            assert!(
                ["uploaded", "exists", "moved_elsewhere"].contains(&outcome),
                "{line}"
            );
            if outcome != "moved_elsewhere" {
                *moved
                    .entry(object["path"].as_str().unwrap().to_owned())
                    .or_default() += 1;
            }
        }
    }
    for name in &names {
        assert_eq!(
            moved.get(&format!("/uploads/{name}")),
            Some(&1),
            "{name}: {moved:?}"
        );
        assert!(!site.www().join(name).exists(), "{name} removed");
        assert_eq!(
            site.object(&format!("uploads/{name}")).unwrap(),
            name.as_bytes()
        );
    }
}

#[test]
fn json_gives_an_object_per_file_and_a_summary_and_the_lines_go_to_stderr() {
    let site = Site::new("      min_age: 0s");
    site.put("a b.txt", b"hello");
    site.put(".env", b"x");
    let run = site.offload(&["--json"]);
    run.assert_code(0);
    let objects: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    let file = objects
        .iter()
        .find(|o| o["path"] == "/uploads/a%20b.txt")
        .expect("an object for the file");
    assert_eq!(file["type"], "file");
    assert_eq!(file["key"], "uploads/a b.txt");
    assert_eq!(file["bytes"], 5);
    assert_eq!(file["outcome"], "uploaded");
    assert_eq!(file["removed"], "deleted");
    assert_eq!(file["reason"], serde_json::Value::Null);
    // CRC-64/NVME of the bytes, as S3 sends it: base64 of the big-endian value.
    let crc = crc_fast::checksum(crc_fast::CrcAlgorithm::Crc64Nvme, b"hello");
    assert_eq!(
        file["checksum"],
        format!(
            "crc64nvme:{}",
            aws_smithy_types::base64::encode(crc.to_be_bytes())
        )
    );
    assert!(file["duration_ms"].as_f64().unwrap() > 0.0);
    let skipped = objects
        .iter()
        .find(|o| o["path"] == "/uploads/.env")
        .unwrap();
    assert_eq!(
        (&skipped["outcome"], &skipped["reason"]),
        (&"skipped".into(), &"dotfile".into())
    );
    let summary = objects.last().unwrap();
    assert_eq!(summary["type"], "summary");
    assert_eq!(
        (&summary["uploaded"], &summary["exit_status"]),
        (&1.into(), &0.into())
    );
    assert!(
        run.stderr
            .contains("uploaded   /uploads/a%20b.txt (5 B), deleted\n"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("offload: 1 uploaded"), "{}", run.stderr);
}

#[test]
fn include_and_exclude_choose_files_by_their_path_below_the_prefix() {
    let site = Site::new("      min_age: 0s");
    for name in ["a.jpg", "b.png", "deep/c.jpg", "deep/tmp.jpg"] {
        site.put(name, name.as_bytes());
    }
    let run = site.offload(&["--include", "**/*.jpg", "--exclude", "**/tmp.*"]);
    run.assert_code(0);
    let moved: Vec<bool> = ["a.jpg", "b.png", "deep/c.jpg", "deep/tmp.jpg"]
        .iter()
        .map(|n| site.object(&format!("uploads/{n}")).is_some())
        .collect();
    assert_eq!(moved, [true, false, true, false]);
    assert!(site.www().join("b.png").exists() && site.www().join("deep/tmp.jpg").exists());
    let bad = site.offload(&["--include", "a["]);
    bad.assert_code(3);
    assert!(
        bad.stderr
            .starts_with("spillway: --include \"a[\" is not a glob: "),
        "{}",
        bad.stderr
    );
}

#[test]
fn bwlimit_holds_the_whole_run_to_its_rate() {
    let site = Site::new("      min_age: 0s\n      concurrency: 4");
    // 1.5 MiB in six files, four at a time, at 1 MiB/s: 1.5 s.
    for i in 0..6 {
        site.put(&format!("f{i}.bin"), &patterned(256 << 10));
    }
    let run = site.offload(&["--bwlimit", "1MiB", "--json"]);
    run.assert_code(0);
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["uploaded"], 6);
    let took = summary["duration_ms"].as_f64().unwrap() / 1000.0;
    // The last chunk's wait ends the body: the whole 1.5 s is spent, and little more.
    assert!(
        (1.35..=1.65).contains(&took),
        "1.5 MiB at 1 MiB/s took {took} s"
    );
    let bad = site.offload(&["--bwlimit", "fast"]);
    bad.assert_code(3);
    assert!(
        bad.stderr.starts_with("error: invalid value 'fast' for '--bwlimit <SIZE>': \"fast\" is not a rate: write a size per second, e.g. 500KiB or 10MiB\n"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_store_that_refuses_checksum_headers_gets_content_md5_and_is_verified_by_etag() {
    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s3 = S3Server::start_refusing_checksums(ACCESS_KEY, SECRET_KEY, refused.clone());
    let site = Site::with(
        s3,
        SECRET_KEY,
        "      min_age: 0s\n      multipart_threshold: 5MiB\n      concurrency: 2",
    );
    let big = patterned(11 << 20);
    site.put("big.bin", &big);
    for i in 0..4 {
        site.put(&format!("small{i}.txt"), format!("small {i}").as_bytes());
    }
    let run = site.offload(&[]);
    run.assert_code(0);
    assert_eq!(site.object("uploads/big.bin").unwrap(), big);
    for i in 0..4 {
        assert_eq!(
            site.object(&format!("uploads/small{i}.txt")).unwrap(),
            format!("small {i}").as_bytes()
        );
        assert!(!site.www().join(format!("small{i}.txt")).exists());
    }
    assert!(refused.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    let said = run
        .stderr
        .matches("refuses the x-amz-checksum-* headers: uploads to bucket media carry Content-MD5 only from now on, verified by the ETag S3 computes")
        .count();
    assert_eq!(said, 1, "said once: {}", run.stderr);
}

#[test]
fn missing_credentials_are_said_once_before_any_file_is_touched() {
    let s3 = S3Server::start(ACCESS_KEY, SECRET_KEY);
    s3.create_bucket("media");
    let endpoint = s3.endpoint();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("www")).unwrap();
    std::fs::write(dir.path().join("www/a.txt"), b"a").unwrap();
    let config = dir.path().join("proxy.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: \"127.0.0.1:1\"\nbuckets:\n  media:\n    bucket: media\n    region: us-east-1\n    endpoint: \"{endpoint}\"\nroutes:\n  - prefix: /uploads\n    root: www\n    bucket: media\n    access: public\n    offload: {{min_age: 0s}}\n"
        ),
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().display().to_string();
    let out = support::run_cli_env(
        &["offload", "--config", &config.display().to_string()],
        &[("HOME", &home_path), ("AWS_EC2_METADATA_DISABLED", "true")],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("spillway: no credentials to upload to bucket media (media in the config): the AWS provider chain found none ("),
        "{stderr}"
    );
    assert!(
        stderr.ends_with("Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE) in offload's environment, add `credentials:` to buckets.media, or run it where a role provides them (instance profile, IRSA, ECS task role)\n"),
        "{stderr}"
    );
    assert!(dir.path().join("www/a.txt").exists());
}

#[test]
fn an_unreachable_endpoint_is_named_and_stops_the_run() {
    let site = Site::new("      min_age: 0s\n      concurrency: 1");
    for name in ["a.txt", "b.txt", "c.txt"] {
        site.put(name, name.as_bytes());
    }
    let Site { s3, proxy } = site;
    let endpoint = s3.endpoint();
    drop(s3);
    let site = Site {
        s3: S3Server::start(ACCESS_KEY, SECRET_KEY),
        proxy,
    };
    let run = site.offload(&[]);
    run.assert_code(1);
    let failed: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("failed"))
        .collect();
    assert_eq!(failed.len(), 1, "{}", run.stdout);
    assert!(
        failed[0].contains(&format!(
            "cannot reach S3 at {endpoint} for s3://media/uploads/"
        )),
        "{}",
        failed[0]
    );
    assert!(run
        .stdout
        .contains("stopping   S3 cannot be reached: no other file is tried"));
    for name in ["a.txt", "b.txt", "c.txt"] {
        assert!(site.www().join(name).exists(), "{name} kept");
    }
}

#[test]
fn watch_serves_metrics_health_and_readiness() {
    let site = Site::new("      min_age: 0s");
    site.put(".env", b"x");
    let port = support::free_port();
    let address = format!("127.0.0.1:{port}");
    let daemon = Daemon::start(&site, &["--admin", &address]);
    daemon.wait_for_line(&format!(
        "admin      http://{address}/metrics, /healthz, /readyz"
    ));
    wait_until("ready", || {
        support::try_request(port, "GET", "/readyz", &[], b"").is_ok_and(|r| r.status == 200)
    });
    assert_eq!(get(port, "/healthz").text(), "ok\n");
    let path = site.put("photo.jpg", b"jpeg bytes");
    wait_until("the photo offloaded", || {
        site.object("uploads/photo.jpg").is_some() && !path.exists()
    });
    let expected = [
        "spillway_offload_files_total{outcome=\"uploaded\",route=\"/uploads\"} 1",
        "spillway_offload_bytes_total{route=\"/uploads\"} 10",
        "spillway_offload_skipped_total{reason=\"dotfile\",route=\"/uploads\"} 1",
        "spillway_offload_pending_files{route=\"/uploads\"} 0",
        "spillway_offload_oldest_pending_age_seconds{route=\"/uploads\"} 0",
    ];
    // The file is gone a moment before its outcome is counted: wait for the counts.
    wait_until("the photo counted", || {
        let text = get(port, "/metrics").text();
        expected.iter().all(|e| text.lines().any(|l| l == *e))
    });
    let metrics = get(port, "/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for line in expected {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    let success = text
        .lines()
        .find_map(|l| l.strip_prefix("spillway_offload_last_success_timestamp_seconds "))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap();
    assert!(success > 1.7e9, "{success}");
    let (code, _, _) = daemon.stop();
    assert_eq!(code, Some(0));
}

#[test]
fn watch_moves_a_thousand_files_made_in_bursts_with_new_directories_and_renames() {
    // 1,040 files: the 100,000-file run is benches/offload/run.sh's; this one has to keep
    // moving on two loaded cores, with a debug build.
    let site = Site::new("      min_age: 0s\n      concurrency: 16");
    let daemon = Daemon::start(&site, &["--json"]);
    let staging = site.proxy.spillway_dir().join("staging");
    let mut expected = Vec::new();
    for burst in 0..4 {
        // A new directory with files already in it, renamed in.
        let dir = staging.join(format!("batch{burst}"));
        std::fs::create_dir_all(&dir).unwrap();
        for i in 0..130 {
            std::fs::write(dir.join(format!("{i}.txt")), format!("{burst}/{i}")).unwrap();
            expected.push((format!("batch{burst}/{i}.txt"), format!("{burst}/{i}")));
        }
        std::fs::rename(&dir, site.www().join(format!("batch{burst}"))).unwrap();
        // And files written straight into a new nested directory.
        for i in 0..130 {
            let name = format!("direct{burst}/sub/{i}.txt");
            site.put(&name, format!("d{burst}/{i}").as_bytes());
            expected.push((name, format!("d{burst}/{i}")));
        }
    }
    let moved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_until_none_left("every file offloaded", || {
            expected
                .iter()
                .filter(|(name, _)| site.www().join(name).exists())
                .count()
        })
    }));
    if let Err(stalled) = moved {
        let (_, lines, stderr) = daemon.stop();
        let last = &lines[lines.len().saturating_sub(40)..];
        eprintln!(
            "--- offload's last lines ---\n{}\n--- its stderr ---\n{stderr}",
            last.join("\n")
        );
        std::panic::resume_unwind(stalled);
    }
    for (name, bytes) in &expected {
        assert_eq!(
            site.object(&format!("uploads/{name}")).as_deref(),
            Some(bytes.as_bytes()),
            "{name}"
        );
    }
    let (code, _, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_run_stopped_by_a_signal_finishes_what_is_in_flight_and_exits_4() {
    let gate = Gate::new("PUT", "/media/uploads/hold.txt");
    let s3 = S3Server::start_gated(ACCESS_KEY, SECRET_KEY, &gate);
    let site = Site::with(s3, SECRET_KEY, "      min_age: 0s\n      concurrency: 1");
    site.put("hold.txt", b"held");
    for i in 0..20 {
        site.put(&format!("later/{i}.txt"), b"later");
    }
    let log = site.proxy.spillway_dir().join("offload.stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args(["offload", "--config", &site.config()])
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    gate.wait_held();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    // The signal is taken while the upload is held; the upload then finishes whole.
    wait_until("the signal taken", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|s| s.contains("stopping: files in flight finish, no new ones start"))
    });
    gate.open();
    let status = child.wait().unwrap();
    let mut stdout = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout).unwrap();
    let out = Run {
        code: status.code(),
        stdout,
        stderr: std::fs::read_to_string(&log).unwrap(),
    };
    out.assert_code(4);
    assert!(out.line("/uploads/hold.txt").starts_with("uploaded"));
    assert!(
        out.summary().ends_with("(interrupted)"),
        "{}",
        out.summary()
    );
    assert!(
        out.stderr.ends_with(
            "spillway: interrupted before every file was looked at; run it again to go on\n"
        ),
        "{}",
        out.stderr
    );
    let left = (0..20)
        .filter(|i| site.www().join(format!("later/{i}.txt")).exists())
        .count();
    assert!(left > 0, "files not started yet stay");
}

#[test]
fn check_probe_tries_each_offload_bucket_for_real() {
    let site = Site::new("      min_age: 0s");
    let out = run_cli(&["check", "--probe", "--config", &site.config()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("probe"))
        .expect(&stdout);
    let head = format!(
        "probe      bucket media ({}): uploaded, verified and deleted s3://media/uploads/.spillway-probe-",
        site.s3.endpoint()
    );
    assert!(line.starts_with(&head), "{line}");
    assert!(line.ends_with("; the checksum headers accepted"), "{line}");
    let left: Vec<_> = std::fs::read_dir(site.s3.root.path().join("media/uploads"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "the probe object is deleted: {left:?}");

    let refused = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let s3 = S3Server::start_refusing_checksums(ACCESS_KEY, SECRET_KEY, refused);
    let fussy = Site::with(s3, SECRET_KEY, "      min_age: 0s");
    let out = run_cli(&["check", "--probe", "--config", &fussy.config()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("; x-amz-checksum-* headers refused: offload sends Content-MD5 alone there, and proves uploads by the ETag\n"),
        "{stdout}"
    );

    let wrong = Site::with(
        S3Server::start(ACCESS_KEY, SECRET_KEY),
        "not-the-secret",
        "      min_age: 0s",
    );
    let out = run_cli(&["check", "--probe", "--config", &wrong.config()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!(
            "warning    bucket media ({}): offload cannot upload: the S3 credentials are not accepted (403 SignatureDoesNotMatch): the secret key does not match the access key id\n",
            wrong.s3.endpoint()
        )),
        "{stdout}"
    );
    assert_eq!(
        stderr,
        "spillway: offload would not work with 1 of the buckets it uploads to (see above)\n"
    );
}

#[test]
fn watch_with_after_keep_checks_a_kept_file_once_not_at_every_rescan() {
    let site = Site::new("      min_age: 0s\n      after: keep");
    site.put("kept.txt", b"stays here");
    let admin = support::free_port();
    let daemon = Daemon::start(
        &site,
        &["--admin", &format!("127.0.0.1:{admin}"), "--rescan", "1s"],
    );
    wait_until("the file uploaded", || {
        site.object("uploads/kept.txt").is_some()
    });
    // Several full walks later, the file has been looked at once.
    let full_walks = || {
        let text = get(admin, "/metrics").text();
        text.lines()
            .find_map(|l| {
                l.strip_prefix("spillway_offload_walks_total{kind=\"full\",route=\"/uploads\"} ")
            })
            .map_or(0, |n| n.parse::<u64>().unwrap())
    };
    wait_until("three more full walks", || full_walks() >= 4);
    let (code, lines, stderr) = daemon.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let said: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("/uploads/kept.txt"))
        .collect();
    assert_eq!(
        said,
        ["uploaded   /uploads/kept.txt (10 B), kept"],
        "no `exists` line at each rescan"
    );
    assert!(site.www().join("kept.txt").exists());
}

#[test]
fn a_config_without_offload_routes_and_a_taken_admin_port_are_said_once_with_status_3() {
    let site = two_routes(S3Server::start(ACCESS_KEY, SECRET_KEY), "      min_age: 0s");
    // The same site without its offload: blocks.
    let config = site.proxy.spillway_dir().join("no-offload.yaml");
    let yaml = std::fs::read_to_string(site.config()).unwrap();
    std::fs::write(
        &config,
        yaml.replace("    offload:\n      min_age: 0s\n", ""),
    )
    .unwrap();
    let out = run_cli(&["offload", "--config", &config.display().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "spillway: no route has an `offload:` block: nothing to offload (add one to each route whose files should move; see README, Offload)\n"
    );
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = taken.local_addr().unwrap().to_string();
    let run = site.offload(&["--watch", "--admin", &address]);
    run.assert_code(3);
    assert_eq!(
        run.stderr.lines().last(),
        Some(format!("spillway: cannot listen on {address} for /metrics, /healthz and /readyz: Address already in use (os error 98) (another process, such as the proxy with the same `admin:`, may have it: give offload its own with --admin)").as_str()),
        "{}",
        run.stderr
    );
}
