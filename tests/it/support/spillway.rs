//! The spillway binary: as a server child process, and its command line.

use super::*;

pub(crate) const SPILLWAY_BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// A running `spillway run --config <dir>/config.yaml` child process, with
/// stdout+stderr in `<dir>/spillway.log` and `<dir>` as its working
/// directory. Killed on drop; if the test is panicking its log is printed so
/// the failure output shows what the proxy said.
pub struct Spillway {
    pub port: u16,
    child: Child,
    dir: TempDir,
    log: PathBuf,
}

impl Spillway {
    /// Start with YAML built for a fresh free port, e.g.
    /// `Spillway::start_with(|port| format!("listen: \"127.0.0.1:{port}\"\n..."))`.
    pub fn start_with(mut make_yaml: impl FnMut(u16) -> String) -> Spillway {
        Self::start_custom(&[], |port, _| make_yaml(port))
    }

    /// Full control: extra environment variables for the child (e.g.
    /// `("RUST_LOG", "debug")`), and `make_yaml` also gets the temp dir so it
    /// can create files there and refer to them. If the chosen port is
    /// grabbed by someone else before spillway binds it, this retries with a
    /// new port (hence `FnMut`).
    pub fn start_custom(
        env: &[(&str, &str)],
        make_yaml: impl FnMut(u16, &Path) -> String,
    ) -> Spillway {
        Self::start_as(None, env, make_yaml)
    }

    /// Like `start_custom`, but when the tests run as root and `uid` is given, spillway runs as
    /// that user: root reads any file, so a permission error can only be seen without it.
    pub fn start_as(
        uid: Option<u32>,
        env: &[(&str, &str)],
        mut make_yaml: impl FnMut(u16, &Path) -> String,
    ) -> Spillway {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(uid, env, None, free_port(), &mut make_yaml) {
                Ok(s) => return s,
                Err(e) if attempt < 3 && e.contains("in use") => continue,
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// Started with its open-files soft limit at `soft` (the hard limit unchanged).
    pub fn start_with_open_files(
        soft: u64,
        make_yaml: impl FnOnce(u16, &Path) -> String,
    ) -> Spillway {
        Self::try_start(None, &[], Some(soft), free_port(), make_yaml)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub(crate) fn try_start(
        uid: Option<u32>,
        env: &[(&str, &str)],
        soft_open_files: Option<u64>,
        port: u16,
        make_yaml: impl FnOnce(u16, &Path) -> String,
    ) -> Result<Spillway, String> {
        let dir = tempfile::tempdir().expect("spillway tempdir");
        let config = dir.path().join("config.yaml");
        let uid = uid.filter(|_| running_as_root());
        let mut yaml = make_yaml(port, dir.path());
        if !yaml.contains("runtime_dir:") {
            // Its pid file and upgrade socket go with the test's own files (not /run).
            yaml.push_str(match uid {
                Some(_) => "\nruntime_dir: xdg/run\n",
                None => "\nruntime_dir: run\n",
            });
        }
        std::fs::write(&config, yaml).expect("write config.yaml");
        if uid.is_some() {
            open_up(dir.path());
        }
        let log = dir.path().join("spillway.log");
        let log_file = std::fs::File::create(&log).expect("create spillway.log");

        // An unprivileged child may not be able to reach the build's target dir (a checkout
        // under a 0700 temp dir, say), so it runs a link or copy of the binary from its own
        // opened-up dir.
        let exe = match uid {
            Some(_) => {
                let exe = dir.path().join("spillway");
                if std::fs::hard_link(SPILLWAY_BIN, &exe).is_err() {
                    std::fs::copy(SPILLWAY_BIN, &exe).expect("copy the spillway binary");
                }
                exe
            }
            None => PathBuf::from(SPILLWAY_BIN),
        };
        let mut cmd = Command::new(&exe);
        // The server logs as deployed (its own default filter) unless RUST_LOG says otherwise.
        cmd.arg("run")
            .arg("--config")
            .arg(&config)
            .current_dir(dir.path())
            // Plain logs, so tests can search them for messages.
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("dup log fd"))
            .stderr(log_file);
        for (k, v) in env {
            cmd.env(k, v);
        }
        if let Some(uid) = uid {
            // A directory of its own for its runtime dir, as a login session would have.
            let xdg = dir.path().join("xdg");
            std::fs::create_dir(&xdg).expect("mkdir xdg");
            std::os::unix::fs::chown(&xdg, Some(uid), Some(uid)).expect("chown xdg");
        }
        if let Some(uid) = uid {
            use std::os::unix::process::CommandExt;
            cmd.uid(uid).gid(uid);
        }
        if let Some(soft) = soft_open_files {
            use std::os::unix::process::CommandExt;
            // SAFETY: only setrlimit(2), async-signal-safe, runs between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    let mut limit = libc::rlimit {
                        rlim_cur: 0,
                        rlim_max: 0,
                    };
                    libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
                    limit.rlim_cur = soft;
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {SPILLWAY_BIN}: {e}"));
        let mut s = Spillway {
            port,
            child,
            dir,
            log,
        };

        let deadline = Instant::now() + SPILLWAY_START_WAIT;
        let mut backoff = Backoff::new();
        loop {
            if let Some(status) = s.child.try_wait().expect("try_wait") {
                return Err(format!(
                    "spillway exited before listening on 127.0.0.1:{port} ({status});\n--- spillway.log ---\n{}",
                    s.logs()
                ));
            }
            // Listening on `port` is not enough: the other listeners (TLS, admin) and the
            // signal handlers come a moment later, and the server says when all are in place.
            if process_listens_on(s.child.id(), port) && s.logs().contains(READY_LINE) {
                return Ok(s);
            }
            if Instant::now() >= deadline {
                // Drop kills it.
                return Err(format!(
                    "spillway did not listen on 127.0.0.1:{port} and say it was ready within {SPILLWAY_START_WAIT:?};\n--- spillway.log ---\n{}",
                    s.logs()
                ));
            }
            backoff.wait();
        }
    }

    /// Everything the child has written to stdout/stderr so far.
    pub fn logs(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// Poll the log until it contains `needle` (10 s deadline), e.g. to wait
    /// for a reload message. Returns the log at that point.
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + PORT_WAIT;
        let mut backoff = Backoff::new();
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "spillway log never contained {needle:?}:\n{logs}"
            );
            backoff.wait();
        }
    }

    /// The temp dir holding config.yaml and spillway.log (also the child's
    /// working directory); tests may put files here.
    pub fn spillway_dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The process the pid file names (after a reload, the new one).
    pub fn serving_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.runtime_dir().join("spillway.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Where its pid file and upgrade socket are (as `try_start` sets `runtime_dir:`).
    pub fn runtime_dir(&self) -> PathBuf {
        let xdg = self.dir.path().join("xdg/run");
        if xdg.exists() {
            xdg
        } else {
            self.dir.path().join("run")
        }
    }

    /// Has the child exited (without waiting)?
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }
}

impl Drop for Spillway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // After a reload another process serves; it goes too.
        if let Some(pid) = self.serving_pid().filter(|&pid| pid != self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        if std::thread::panicking() {
            eprintln!("--- spillway.log (port {}) ---\n{}", self.port, self.logs());
        }
    }
}

/// The uid of `nobody`, for [`Spillway::start_as`].
pub const NOBODY: u32 = 65534;

pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
}

/// Makes a temp dir tree readable and traversable by everyone (temp dirs are 0700), so an
/// unprivileged spillway can read its config and roots. Files made unreadable on purpose
/// afterwards stay that way.
pub(crate) fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in walk(dir) {
        let mode = if entry.is_dir() { 0o755 } else { 0o644 };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
}

pub(crate) fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut all = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < all.len() {
        if all[i].is_dir() && !all[i].is_symlink() {
            if let Ok(entries) = std::fs::read_dir(&all[i]) {
                all.extend(entries.flatten().map(|e| e.path()));
            }
        }
        i += 1;
    }
    all
}

/// Does process `pid` hold a listening TCP socket on `port`? A bare connect
/// cannot tell spillway from whoever else grabbed the port after
/// [`free_port`] released it (e.g. another test's server binding port 0);
/// then spillway fails to bind and we must see that, not the other server.
/// Linux: find LISTEN sockets on the port in /proc/net/tcp{,6} and look for
/// their inodes among the process's fds.
#[cfg(target_os = "linux")]
pub(crate) fn process_listens_on(pid: u32, port: u16) -> bool {
    let port_suffix = format!(":{port:04X}");
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st ... inode (field 9); st 0A = LISTEN
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[1].ends_with(&port_suffix) && f[3] == "0A" {
                sockets.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if sockets.is_empty() {
        return false;
    }
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path())
            .is_ok_and(|target| sockets.iter().any(|s| target.as_os_str() == s.as_str()))
    })
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn process_listens_on(_pid: u32, port: u16) -> bool {
    port_accepts(port)
}

/// Run the binary once (e.g. `["check", "--config", path]`) and collect its
/// output. Panics if it runs longer than 30 s so a hang fails the test.
pub fn run_cli(args: &[&str]) -> Output {
    run_cli_cmd(args, Command::new(SPILLWAY_BIN))
}

/// Writes `yaml` to `config` and runs `spillway check` on it.
pub fn check_config(config: &Path, yaml: &str) -> Output {
    std::fs::write(config, yaml).expect("write the config");
    run_cli(&["check", "--config", &config.display().to_string()])
}

/// [`run_cli`] with a controlled AWS environment: every inherited `AWS_*`
/// variable is removed, so the AWS provider chain sees only what `env` sets
/// (e.g. `HOME`, `AWS_SHARED_CREDENTIALS_FILE`, `AWS_EC2_METADATA_DISABLED`).
pub fn run_cli_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(SPILLWAY_BIN);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(name);
        }
    }
    cmd.envs(env.iter().copied());
    run_cli_cmd(args, cmd)
}

pub(crate) fn run_cli_cmd(args: &[&str], mut cmd: Command) -> Output {
    let mut child = cmd
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {SPILLWAY_BIN}: {e}"));
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut p) = pipe {
                let _ = p.read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut backoff = Backoff::new();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("spillway {args:?} still running after {IO_TIMEOUT:?}");
        }
        backoff.wait();
    };
    Output {
        status,
        stdout: stdout.join().expect("stdout reader"),
        stderr: stderr.join().expect("stderr reader"),
    }
}
