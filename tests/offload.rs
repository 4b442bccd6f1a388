//! `spillway offload` against a real S3 server (s3s-fs, verifying signatures and checksums),
//! with the real proxy answering for the moved files afterwards.

mod support;

use std::os::unix::fs::symlink;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use support::{follow, get, run_cli, wait_until, Gate, S3Server, Spillway, ACCESS_KEY, SECRET_KEY};

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
    run.assert_code(1);
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
    run.assert_code(1);
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
