#!/usr/bin/env python3
"""Side-by-side load benchmark: spillway vs nginx vs lighttpd doing the same job on one machine.

    python3 benches/load/bench.py            # or bash benches/load/run.sh; ~17 minutes on 2 cores
    DURATION=3s ROUNDS=1 WORKERS=1 python3 benches/load/bench.py      # quick smoke run

What it does: builds spillway (cargo build --release), installs Debian's nginx-light, lighttpd,
lighttpd-modules-lua, wrk (and curl, iproute2) with apt-get when missing (no system nginx or
lighttpd service is started), generates one document root in a temp dir, and starts on
127.0.0.1 only: spillway; nginx configured as the same redirect-or-serve proxy (tuned:
open_file_cache, sendfile); lighttpd 1.4 with a mod_magnet Lua script "stat the file, else 302
to S3" (the project's seed) and mod_proxy; and a second nginx as the keep-alive "legacy" backend
all three proxy to. The configs are the templates beside this file (*.tmpl, *.lua).

For each worker count in WORKERS it (re)starts the three with that many workers, measures
resident memory while a rate-limited client streams a 1 GiB file and while CONN_MEM_N idle
keep-alive connections are open (idle_connections.py), then checks every workload's answer from
every server (status, body size and bytes, Location, backend page, X-Forwarded-For) before each
wrk run, runs wrk against the three in turn ROUNDS times (the first server rotating every round,
each round at every wrk thread count of WRK_THREADS), checks wrk's bytes per response, and
prints medians: a table per worker count and wrk thread count. Every process it starts is
stopped on exit, also on failure or Ctrl-C.
Results: stdout and target/load/results.md; raw wrk output, configs and logs: target/load/raw/.

Tuning (environment):
  DURATION=7s        wrk duration of each measured run
  CONNECTIONS=64     wrk connections (keep-alive)
  ROUNDS=3           rounds over the three servers; medians are reported
  WORKERS="1 2"      server worker counts to measure, one section each: spillway `threads:`,
                     nginx `worker_processes`, lighttpd `server.max-worker` (unset for 1)
                     (THREADS=n is taken as WORKERS=n when WORKERS is not set)
  WRK_THREADS=2      wrk thread counts, one table each per worker count, e.g. WRK_THREADS="1 2"
                     (wrk shares the machine's cores with the servers)
  WARMUP=1s          unmeasured wrk run per workload and server before round 1 (0 = none)
  BACKEND_WORKERS=1  worker_processes of the legacy backend nginx
  MEM_SECONDS=8      how long the slow reader streams the 1 GiB file
  MEM_RATE=50M       its curl --limit-rate
  CONN_MEM_N=2000    idle keep-alive connections held for the connection-memory test (0 = skip)
  NGINX_SENDFILE=on  nginx `sendfile` and `tcp_nopush` (Debian's default is sendfile on)
  SPILLWAY_PORT=18080 NGINX_PORT=18081 BACKEND_PORT=18082 LIGHTTPD_PORT=18083
  SKIP_BUILD=1       use the existing target/release/spillway
  SKIP_INSTALL=1     never call apt-get (fail if a tool is missing)

Python 3.11 standard library only.
"""
import glob
import grp
import http.client
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
SERVERS = ("spillway", "nginx", "lighttpd")
PORT_KNOBS = ("SPILLWAY_PORT", "NGINX_PORT", "BACKEND_PORT", "LIGHTTPD_PORT")
STOP_SIGNAL = {  # nginx: TERM = fast shutdown; spillway: INT = stop at once; lighttpd: TERM = at once
    "spillway": signal.SIGINT, "nginx": signal.SIGTERM, "lighttpd": signal.SIGTERM}
S3_BASE = "http://127.0.0.1:9000/example-media"
LEGACY_MARKER = "legacy-backend-page"


class Fatal(Exception):
    """A failure explained to the operator; the harness stops everything and exits 1."""


def log(msg):
    print(f"[load] {msg}", file=sys.stderr, flush=True)


def die(msg):
    raise Fatal(msg)


def wait_until(pred, seconds, step=0.1):
    """Polls pred every step seconds, at most `seconds`; True as soon as it holds."""
    for _ in range(round(seconds / step)):
        if pred():
            return True
        time.sleep(step)
    return False


def tail(*paths, n=20):
    """Like tail -n N: the last lines of each file, under its name when there are several."""
    out = []
    for p in paths:
        try:
            lines = "\n".join(Path(p).read_text(errors="replace").splitlines()[-n:])
        except OSError as e:
            lines = f"tail: {p}: {e.strerror}"
        out.append(f"==> {p} <==\n{lines}" if len(paths) > 1 else lines)
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# Knobs
# ---------------------------------------------------------------------------------------------
@dataclass
class Config:
    duration: str
    connections: int
    rounds: int
    workers: list
    wrk_threads: list
    warmup: str
    backend_workers: int
    mem_seconds: int
    mem_rate: str
    conn_mem_n: int
    nginx_sendfile: str
    ports: dict  # SPILLWAY_PORT, NGINX_PORT, BACKEND_PORT, LIGHTTPD_PORT -> int
    skip_build: bool
    skip_install: bool

    def port(self, server):
        return self.ports[f"{server.upper()}_PORT"]

    def command(self):
        """The command line that reproduces this run, for the report."""
        return (f'WORKERS="{" ".join(map(str, self.workers))}" DURATION={self.duration} '
                f"ROUNDS={self.rounds} CONNECTIONS={self.connections} "
                f'WRK_THREADS="{" ".join(map(str, self.wrk_threads))}" WARMUP={self.warmup} '
                f"MEM_SECONDS={self.mem_seconds} MEM_RATE={self.mem_rate} CONN_MEM_N={self.conn_mem_n} "
                f"NGINX_SENDFILE={self.nginx_sendfile} BACKEND_WORKERS={self.backend_workers} "
                "bash benches/load/run.sh")


def env(name, default):
    return os.environ.get(name) or default  # like bash's ${NAME:-default}: empty = unset


def read_config():
    def uint(name, value, ok=lambda n: n >= 1, what="a positive integer"):
        if not re.fullmatch(r"[0-9]+", value) or not ok(int(value)):
            die(f"{name} must be {what} (got '{value}')")
        return int(value)

    def uint_list(name, value, ok, what):
        items = value.split()
        if not items:
            die(f"{name} must list at least one count (got '{value}')")
        nums = [uint(name, v, ok, what) for v in items]
        if len(set(nums)) != len(nums):
            die(f"{name} lists a count twice (got '{value}')")
        return nums

    connections = uint("CONNECTIONS", env("CONNECTIONS", "64"))
    workers = uint_list("WORKERS", env("WORKERS", env("THREADS", "1 2")),
                        lambda n: 1 <= n <= 64, "worker counts from 1 to 64")
    wrk_threads = uint_list("WRK_THREADS", env("WRK_THREADS", "2"),
                            lambda n: n >= 1, "wrk thread counts of at least 1")
    for t in wrk_threads:
        if t > connections:
            die(f"WRK_THREADS ({t}) must not exceed CONNECTIONS ({connections})")
    duration, warmup = env("DURATION", "7s"), env("WARMUP", "1s")
    if not re.fullmatch(r"[0-9]+[smh]?", duration):
        die(f"DURATION must look like 10s, 2m (got '{duration}')")
    if not re.fullmatch(r"[0-9]+[smh]?", warmup):
        die(f"WARMUP must look like 1s or 0 (got '{warmup}')")
    sendfile = env("NGINX_SENDFILE", "on")
    if sendfile not in ("on", "off"):
        die("NGINX_SENDFILE must be on or off")
    defaults = dict(zip(PORT_KNOBS, (18080, 18081, 18082, 18083)))
    ports = {k: uint(k, env(k, str(d)), lambda n: 0 < n < 65536, "a port from 1 to 65535")
             for k, d in defaults.items()}
    if len(set(ports.values())) != 4:
        die("SPILLWAY_PORT, NGINX_PORT, BACKEND_PORT and LIGHTTPD_PORT must differ")
    return Config(
        duration=duration,
        connections=connections,
        rounds=uint("ROUNDS", env("ROUNDS", "3")),
        workers=workers,
        wrk_threads=wrk_threads,
        warmup=warmup,
        backend_workers=uint("BACKEND_WORKERS", env("BACKEND_WORKERS", "1")),
        mem_seconds=uint("MEM_SECONDS", env("MEM_SECONDS", "8"), what="a positive integer (seconds)"),
        mem_rate=env("MEM_RATE", "50M"),
        # nginx has worker_connections 8192 (per worker, upstream connections included)
        conn_mem_n=uint("CONN_MEM_N", env("CONN_MEM_N", "2000"), lambda n: n <= 8000,
                        "an integer from 0 to 8000"),
        nginx_sendfile=sendfile,
        ports=ports,
        skip_build=env("SKIP_BUILD", "0") != "0",
        skip_install=env("SKIP_INSTALL", "0") != "0",
    )


# ---------------------------------------------------------------------------------------------
# Processes: every process the harness starts is tracked and stopped on exit, whatever happens.
# Each runs in its own process group, so Ctrl-C reaches the harness only, which stops them in
# order.
# ---------------------------------------------------------------------------------------------
def children(pid):
    """The pids whose parent is pid (nginx's and lighttpd's workers)."""
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(d))
    return kids


def running(pid):
    """The process exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Procs:
    def __init__(self):
        self.tracked = []  # (Popen, the signal that stops it)

    def start(self, argv, sig, log_path, stdin=subprocess.DEVNULL, env=None):
        """Starts argv in the background, its output to log_path."""
        with open(log_path, "wb") as out:
            p = subprocess.Popen([str(a) for a in argv], stdin=stdin, stdout=out,
                                 stderr=subprocess.STDOUT, env=env, process_group=0)
        self.tracked.append((p, sig))
        return p

    def run(self, argv, log_path):
        """Runs a bounded command to its end (tracked: a signal meanwhile stops it too)."""
        p = self.start(argv, signal.SIGTERM, log_path)
        rc = p.wait()
        self.forget(p)
        return rc

    def forget(self, p):
        self.tracked = [t for t in self.tracked if t[0] is not p]

    def stop(self, p, sig):
        if p.stdin:
            try:
                p.stdin.close()  # the idle-connection holder closes its connections on EOF
            except OSError:
                pass
        if p.poll() is not None:
            return
        # nginx and lighttpd masters: remember their workers, which a SIGKILL would orphan
        kids = children(p.pid)
        try:
            p.send_signal(sig)
            p.wait(timeout=5)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} did not stop on {sig.name}; SIGKILL")
            p.kill()
            p.wait()
        for c in kids:  # they exit with it, or survive a SIGKILLed master
            if not wait_until(lambda: not running(c), 5):
                log(f"pid {c} (a worker of {p.pid}) did not stop; SIGKILL")
                try:
                    os.kill(c, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def stop_all(self):
        for p, sig in reversed(self.tracked):
            self.stop(p, sig)
        self.tracked = []


# ---------------------------------------------------------------------------------------------
# Shared state of one run
# ---------------------------------------------------------------------------------------------
@dataclass
class Run:
    cfg: Config
    procs: Procs
    raw: Path  # target/load/raw
    nginx: str = ""
    lighttpd: str = ""
    spillway: Path = None
    sudo: list = field(default_factory=list)
    policy_rc_created: bool = False
    work: Path = None  # the temp dir: document root, legacy page, live configs
    docroot: Path = None
    legacy_size: int = 0
    nofile: int = 0
    lighttpd_max_fds: int = 0
    server: dict = field(default_factory=dict)  # name -> Popen of the running server
    etag: dict = field(default_factory=dict)  # (server, path) -> that server's ETag
    peak_reset_ok: bool = True


# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
def find_bin(name):
    """PATH, or /usr/sbin (not on every root PATH)."""
    found = shutil.which(name)
    if found:
        return found
    return f"/usr/sbin/{name}" if os.access(f"/usr/sbin/{name}", os.X_OK) else ""


def magnet_module():
    """lighttpd's mod_magnet.so (Debian: lighttpd-modules-lua), or ''."""
    for d in ["/usr/lib/lighttpd", "/usr/lib64/lighttpd", "/usr/local/lib/lighttpd",
              *sorted(glob.glob("/usr/lib/*-linux-gnu/lighttpd"))]:
        if os.path.exists(f"{d}/mod_magnet.so"):
            return f"{d}/mod_magnet.so"
    return ""


def install_tools(run):
    wanted = [("nginx-light", lambda: find_bin("nginx")), ("lighttpd", lambda: find_bin("lighttpd")),
              ("lighttpd-modules-lua", magnet_module), ("wrk", lambda: shutil.which("wrk")),
              ("curl", lambda: shutil.which("curl")), ("iproute2", lambda: shutil.which("ss"))]
    missing = [pkg for pkg, present in wanted if not present()]
    if missing:
        if run.cfg.skip_install:
            die(f"missing: {' '.join(missing)} (SKIP_INSTALL=1)")
        if os.geteuid() != 0:
            if not shutil.which("sudo"):
                die(f"missing: {' '.join(missing)}; run as root or install them")
            run.sudo = ["sudo"]
        sudo = run.sudo

        def sh(*argv, **kw):
            if subprocess.run([*sudo, *argv], **kw).returncode != 0:
                die(f"{' '.join(argv)} failed")

        # Keep apt from starting a system-wide nginx or lighttpd service (port 80, all addresses).
        if not os.path.exists("/usr/sbin/policy-rc.d"):
            sh("tee", "/usr/sbin/policy-rc.d", input=b"#!/bin/sh\nexit 101\n", stdout=subprocess.DEVNULL)
            run.policy_rc_created = True
            sh("chmod", "755", "/usr/sbin/policy-rc.d")
        log(f"installing {' '.join(missing)} with apt-get")
        sh("apt-get", "update", "-q")

        def apt_install(pkgs):
            return subprocess.run([*sudo, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install",
                                   "-y", "-q", "--no-install-recommends", *pkgs]).returncode == 0

        if not apt_install(missing):
            # nginx-light was folded into `nginx` after Debian 12
            if "nginx-light" not in missing:
                die(f"apt-get install {' '.join(missing)} failed")
            log("nginx-light not installable; trying the nginx package")
            missing = ["nginx" if p == "nginx-light" else p for p in missing]
            if not apt_install(missing):
                die(f"apt-get install {' '.join(missing)} failed")
        remove_policy_rc(run)
    run.nginx, run.lighttpd = find_bin("nginx"), find_bin("lighttpd")
    if not run.nginx:
        die("nginx not found after install")
    if not os.access("/etc/nginx/mime.types", os.R_OK):
        die("/etc/nginx/mime.types missing (package nginx-common)")
    if not run.lighttpd:
        die("lighttpd not found after install")
    if not magnet_module():
        die("lighttpd's mod_magnet.so not found (package lighttpd-modules-lua)")
    for t in ("wrk", "curl", "ss"):
        if not shutil.which(t):
            die(f"{t} not found after install")


def remove_policy_rc(run):
    if run.policy_rc_created:
        subprocess.run([*run.sudo, "rm", "-f", "/usr/sbin/policy-rc.d"])
        run.policy_rc_created = False


# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
def build(run, target_dir):
    run.spillway = target_dir / "release" / "spillway"
    if not run.cfg.skip_build:
        log("cargo build --release")
        if subprocess.run(["cargo", "build", "--release"], cwd=ROOT).returncode != 0:
            die("cargo build --release failed (someone mid-edit in src/? retry, or SKIP_BUILD=1)")
    if not os.access(run.spillway, os.X_OK):
        die(f"{run.spillway} not found (build it, or unset SKIP_BUILD)")


# ---------------------------------------------------------------------------------------------
# Document root and configs
# ---------------------------------------------------------------------------------------------
def make_docroot(run):
    run.raw.mkdir(parents=True, exist_ok=True)
    for ext in ("txt", "log", "conf", "yaml", "lua"):
        for f in run.raw.glob(f"*.{ext}"):
            f.unlink()
    run.work = Path(tempfile.mkdtemp(prefix="spillway-load.", dir="/tmp"))
    run.work.chmod(0o755)  # nginx and lighttpd workers run as an unprivileged user
    run.docroot = run.work / "www"
    up = run.docroot / "uploads"
    for d in (up / "public", up / "private", up / "assets", run.work / "legacy"):
        d.mkdir(parents=True)
    random_files = {"1k.bin": 1024, "1m.bin": 1048576,
                    # the browser mix's static assets (no server compresses: the body is the file)
                    "assets/site.css": 2048, "assets/print.css": 1024, "assets/app.js": 8192,
                    "assets/vendor.js": 24576, "assets/hero.png": 30720, "assets/logo.png": 4096}
    for name, size in random_files.items():
        (up / name).write_bytes(os.urandom(size))
    with open(up / "1g.bin", "wb") as f:  # sparse: reads are page-cache zeroes, no disk I/O
        f.truncate(1 << 30)
    page = (f"<!doctype html>\n<html><head><title>legacy</title></head><body>\n<h1>{LEGACY_MARKER}</h1>\n"
            f"<p>The old application, served by a separate nginx on 127.0.0.1:"
            f"{run.cfg.ports['BACKEND_PORT']}.</p>\n</body></html>\n")
    (run.work / "legacy" / "index.html").write_text(page)
    run.legacy_size = len(page.encode())
    make_readable(run.work)


def make_readable(top):
    """chmod -R a+rX"""
    for dirpath, dirnames, filenames in os.walk(top):
        os.chmod(dirpath, os.stat(dirpath).st_mode | 0o555)
        for f in filenames:
            p = os.path.join(dirpath, f)
            os.chmod(p, os.stat(p).st_mode | 0o444)


def render(run, template, out, workers, **extra):
    """Fills a template's @PLACEHOLDERS@ and writes it to out."""
    values = {"WORKERS": workers, "BACKEND_WORKERS": run.cfg.backend_workers,
              **{k: v for k, v in run.cfg.ports.items()},
              "DOCROOT": run.docroot, "LEGACY_ROOT": run.work / "legacy",
              "SENDFILE": run.cfg.nginx_sendfile, "NOFILE": run.nofile,
              "LIGHTTPD_MAX_FDS": run.lighttpd_max_fds, **extra}
    text = (HERE / template).read_text()
    for k, v in values.items():
        text = text.replace(f"@{k}@", str(v))
    Path(out).write_text(text)
    for line in text.splitlines():
        if not line.startswith("#") and re.search(r"@[A-Z_]*@", line):
            die(f"unsubstituted placeholder in {out}")


def config_check(argv, log_path, what):
    with open(log_path, "wb") as f:
        rc = subprocess.run([str(a) for a in argv], stdout=f, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        die(f"{what}:\n{Path(log_path).read_text(errors='replace')}")


# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
def raise_nofile(run):
    for lim in (65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1]):  # ulimit -n, else the hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lim, lim))
            break
        except (ValueError, OSError):
            pass
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    run.nofile = 65536 if soft == resource.RLIM_INFINITY else min(soft, 65536)
    if run.nofile < run.cfg.conn_mem_n + 256:
        die(f"open file limit {run.nofile} is too low for CONN_MEM_N={run.cfg.conn_mem_n}")
    # the servers' own fd limits: what this process has (a container may not allow raising it)
    run.lighttpd_max_fds = min(run.nofile, 65535)  # a 16-bit option


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def wait_port(port, proc, name, *logs):
    def up():
        if proc.poll() is not None:
            die(f"{name} exited during startup; its logs ({' '.join(map(str, logs))}):\n{tail(*logs)}")
        return port_open(port)

    if not wait_until(up, 10):
        die(f"{name} did not listen on 127.0.0.1:{port} within 10 s; log tails:\n{tail(*logs)}")


def wait_port_closed(port, name):
    if not wait_until(lambda: not port_open(port), 10):
        die(f"127.0.0.1:{port} still accepts connections 10 s after {name} was stopped")


def cpu_idle_pct():
    """Percent of CPU time idle over one second, to show whether something else was running."""
    def sample():
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return f[3] + f[4], sum(f)  # idle + iowait, total

    i0, t0 = sample()
    time.sleep(1)
    i1, t1 = sample()
    return round(100 * (i1 - i0) / (t1 - t0)) if t1 != t0 else 0


def start_nginx(run, prefix, name, port, logname):
    logf = run.raw / f"{logname}.log"
    p = run.procs.start([run.nginx, "-e", prefix / "startup-error.log", "-p", prefix, "-c", prefix / "nginx.conf"],
                        signal.SIGTERM, logf)
    wait_port(port, p, name, logf, prefix / "startup-error.log", prefix / "error.log")
    return p


def start_backend(run):
    d = run.work / "backend"
    d.mkdir()
    render(run, "backend.conf.tmpl", d / "nginx.conf", 1, PREFIX=d)
    shutil.copy(d / "nginx.conf", run.raw / "backend.conf")
    config_check([run.nginx, "-t", "-q", "-e", d / "startup-error.log", "-p", d, "-c", d / "nginx.conf"],
                 run.raw / "backend-check.log", "nginx -t rejected the generated backend config")
    port = run.cfg.ports["BACKEND_PORT"]
    log(f"starting backend nginx on 127.0.0.1:{port} ({run.cfg.backend_workers} worker)")
    start_nginx(run, d, "backend", port, "backend")


def start_servers(run, n):
    """Renders and checks the three configs for n workers, and starts the three servers."""
    d, raw, cfg = run.work / f"w{n}", run.raw, run.cfg
    (d / "nginx").mkdir(parents=True)
    (d / "lighttpd").mkdir()
    render(run, "spillway.yaml.tmpl", d / "spillway.yaml", n)
    render(run, "nginx.conf.tmpl", d / "nginx/nginx.conf", n, PREFIX=d / "nginx")
    if os.geteuid() == 0:  # like nginx's workers when started by root (user nobody), not as root
        group = grp.getgrgid(pwd.getpwnam("nobody").pw_gid).gr_name
        user = f'server.username      = "nobody"\nserver.groupname     = "{group}"'
    else:
        user = f"# server.username: not set (not started as root: runs as {pwd.getpwuid(os.getuid()).pw_name})"
    max_worker = (f"server.max-worker = {n}" if n > 1
                  else "# server.max-worker: not set (one process, lighttpd's recommendation)")
    render(run, "lighttpd.conf.tmpl", d / "lighttpd/lighttpd.conf", n, PREFIX=d / "lighttpd",
           LIGHTTPD_MAX_WORKER=max_worker, LIGHTTPD_USER=user)
    shutil.copy(HERE / "s3-redirect.lua", d / "lighttpd/s3-redirect.lua")
    make_readable(d)
    shutil.copy(d / "spillway.yaml", raw / f"spillway-w{n}.yaml")
    shutil.copy(d / "nginx/nginx.conf", raw / f"nginx-w{n}.conf")
    shutil.copy(d / "lighttpd/lighttpd.conf", raw / f"lighttpd-w{n}.conf")
    shutil.copy(d / "lighttpd/s3-redirect.lua", raw / "s3-redirect.lua")

    config_check([run.spillway, "check", "--config", d / "spillway.yaml"], raw / f"spillway-check-w{n}.log",
                 f"spillway check rejected the generated config ({raw}/spillway-w{n}.yaml)")
    config_check([run.nginx, "-t", "-q", "-e", d / "nginx/startup-error.log", "-p", d / "nginx",
                  "-c", d / "nginx/nginx.conf"], raw / f"nginx-check-w{n}.log",
                 f"nginx -t rejected the generated config ({raw}/nginx-w{n}.conf)")
    # -tt: also loads the modules (mod_magnet, mod_proxy)
    config_check([run.lighttpd, "-tt", "-f", d / "lighttpd/lighttpd.conf"], raw / f"lighttpd-check-w{n}.log",
                 f"lighttpd -tt rejected the generated config ({raw}/lighttpd-w{n}.conf)")

    port = cfg.port("spillway")
    log(f"starting spillway on 127.0.0.1:{port} (threads: {n}, access_log off, RUST_LOG=warn)")
    logf = raw / f"spillway-w{n}.log"
    run.server["spillway"] = p = run.procs.start(
        [run.spillway, "run", "--config", d / "spillway.yaml"], STOP_SIGNAL["spillway"], logf,
        env={**os.environ, "RUST_LOG": "warn"})
    wait_port(port, p, "spillway", logf)

    port = cfg.port("nginx")
    log(f"starting nginx on 127.0.0.1:{port} (worker_processes {n}, access_log off, open_file_cache)")
    run.server["nginx"] = start_nginx(run, d / "nginx", "nginx", port, f"nginx-w{n}")

    port = cfg.port("lighttpd")
    lw = f"server.max-worker = {n}" if n > 1 else "one process"
    log(f"starting lighttpd on 127.0.0.1:{port} ({lw}, mod_magnet, no access log)")
    logf = raw / f"lighttpd-w{n}.log"
    run.server["lighttpd"] = p = run.procs.start(
        [run.lighttpd, "-D", "-f", d / "lighttpd/lighttpd.conf"], STOP_SIGNAL["lighttpd"], logf)
    wait_port(port, p, "lighttpd", logf)
    # the workers are forked after the parent has bound the port
    if n > 1 and not wait_until(lambda: len(children(p.pid)) >= n, 10):
        die(f"lighttpd did not start {n} workers within 10 s")


def stop_servers(run, n):
    """Stops the three, keeps nginx's error log."""
    for s in ("lighttpd", "nginx", "spillway"):
        p = run.server.pop(s)
        run.procs.stop(p, STOP_SIGNAL[s])
        run.procs.forget(p)
        wait_port_closed(run.cfg.port(s), s)
    try:
        shutil.copy(run.work / f"w{n}/nginx/error.log", run.raw / f"nginx-error-w{n}.log")
    except OSError:
        pass


def alive(run, s):
    if run.server[s].poll() is not None:
        die(f"{s} is no longer running (logs: {run.raw})")


# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
def proc_kib(pid, fld):
    """A /proc/PID/status field in KiB (0 if the process is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name == fld:
                return int(value.split()[0])
    except OSError:
        pass
    return 0


def server_pids(run, s):
    """nginx master + workers, lighttpd + its workers (if any), spillway alone."""
    pid = run.server[s].pid
    return [pid, *children(pid)]


def server_kib(run, s, fld):
    """Summed over the server's processes (RSS counts shared pages in every process)."""
    return sum(proc_kib(p, fld) for p in server_pids(run, s))


def reset_peak(run, s):
    """Resets VmHWM to the current RSS (Linux >= 4.0), so that a later peak is that phase's own."""
    ok = True
    for p in server_pids(run, s):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


def settled_kib(run, s):
    """VmRSS once two readings 0.2 s apart agree within 64 KiB (at most 5 s): allocators give
    memory back a little after it was freed, and a baseline taken during that would skew a
    difference."""
    prev = cur = server_kib(run, s, "VmRSS")
    for _ in range(25):
        time.sleep(0.2)
        cur = server_kib(run, s, "VmRSS")
        if abs(cur - prev) <= 64:
            break
        prev = cur
    return cur


def mib(kib):
    return f"{kib / 1024:.1f} MiB"


def stream_big(run, s, n):
    """Streams the 1 GiB file to a rate-limited curl for MEM_SECONDS; returns the MiB downloaded."""
    cfg = run.cfg
    out = run.raw / f"stream-w{n}-{s}.txt"
    rc = run.procs.run(["curl", "-s", "-o", "/dev/null", "--limit-rate", cfg.mem_rate,
                        "--max-time", cfg.mem_seconds, "-w", "%{http_code} %{size_download}\n",
                        f"http://127.0.0.1:{cfg.port(s)}/uploads/1g.bin"], out)
    # 28 = --max-time reached: expected, the file is bigger than rate x time
    if rc not in (0, 28):
        die(f"streaming the 1 GiB file from {s} failed (curl exit {rc})")
    code, size = (out.read_text().split() + ["", "0"])[:2]
    if code != "200":
        die(f"streaming the 1 GiB file from {s}: status {code}, expected 200")
    return f"{int(size) / 1048576:.0f}"


def server_conns(port):
    """The server's sockets on its port that it has not closed yet (ESTABLISHED, or CLOSE-WAIT:
    the client closed, the server has not)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "state", "close-wait", f"( sport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return len(out.splitlines())


def wait_no_conns(run, s):
    """Until the server has closed every connection on its port (at most 30 s)."""
    port = run.cfg.port(s)
    if not wait_until(lambda: server_conns(port) == 0, 30):
        die(f"{s} still had {server_conns(port)} connection(s) open 30 s after their clients closed them")


@dataclass
class ConnMem:
    idle: int  # KiB before
    open: int  # with N idle connections open
    after: int  # once all are closed


def conn_mem(run, s, n):
    """RSS idle, with CONN_MEM_N idle keep-alive connections open (each has had one
    GET /uploads/1k.bin answered in full), and after they are closed and the server has closed
    its side of every one."""
    cfg, port, want = run.cfg, run.cfg.port(s), run.cfg.conn_mem_n
    out = run.raw / f"connmem-w{n}-{s}.txt"
    alive(run, s)
    wait_no_conns(run, s)  # the previous test's connection included
    idle = settled_kib(run, s)
    # its stdin: a line (or end-of-file if the harness dies) makes it close them all
    holder = run.procs.start([sys.executable, HERE / "idle_connections.py", "127.0.0.1", port, want,
                              "/uploads/1k.bin", 1024], signal.SIGTERM, out,
                             stdin=subprocess.PIPE)

    def ready():
        return re.search(r"^READY ", out.read_text(errors="replace"), re.M) is not None

    wait_until(lambda: ready() or holder.poll() is not None, 130)
    if not ready():
        holder.stdin.close()
        rc = holder.wait()
        run.procs.forget(holder)
        die(f"idle-connection test against {s} failed (exit {rc}):\n{tail(out, n=5)}")
    seen = server_conns(port)
    opened = settled_kib(run, s)
    try:
        holder.stdin.write(b"\n")
        holder.stdin.close()
    except BrokenPipeError:
        pass  # it exited: its status says why
    rc = holder.wait()
    run.procs.forget(holder)
    if rc != 0:
        die(f"idle-connection test against {s} failed while closing (exit {rc}):\n{tail(out, n=5)}")
    still = re.search(r"^STILL_OPEN (\d+)", out.read_text(), re.M)
    still = int(still.group(1)) if still else 0
    if still != want:
        die(f"{s} closed {want - still} of the {want} idle connections during the test")
    if seen < want:
        die(f"ss saw only {seen} established connections on {s}'s port while {want} were open")
    wait_no_conns(run, s)
    after = settled_kib(run, s)
    alive(run, s)
    log(f"  {s}: idle {mib(idle)}, with {cfg.conn_mem_n} open {mib(opened)}, after close {mib(after)}")
    return ConnMem(idle, opened, after)


# ---------------------------------------------------------------------------------------------
# Workloads and answer checks
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Url:
    """kind: file = 200 with the file's bytes; s3 = 302 to the object's URL; s3priv = the same,
    presigned by spillway; legacy = the backend's page with X-Forwarded-For seen; 304 = a
    conditional GET with that server's If-None-Match."""
    path: str
    kind: str


@dataclass(frozen=True)
class Workload:
    key: str
    name: str
    urls: tuple  # what is checked; for (g) the paths browser.lua cycles through

    @property
    def mix(self):
        return self.key == "g"


# (g): per 10 requests, what a browser fetches for a page of the legacy app
MIX = (Url("/legacy/page.html", "legacy"), Url("/uploads/assets/site.css", "file"),
       Url("/uploads/assets/app.js", "file"), Url("/uploads/assets/hero.png", "file"),
       Url("/uploads/public/avatars/17.jpg", "s3"), Url("/uploads/assets/logo.png", "file"),
       Url("/uploads/assets/vendor.js", "file"), Url("/uploads/public/avatars/42.jpg", "s3"),
       Url("/uploads/assets/site.css", "304"), Url("/uploads/assets/print.css", "file"))
WORKLOADS = (
    Workload("a", "(a) 1 KiB file hit", (Url("/uploads/1k.bin", "file"),)),
    Workload("b", "(b) 1 MiB file hit", (Url("/uploads/1m.bin", "file"),)),
    Workload("c", "(c) miss -> public 302", (Url("/uploads/public/missing.png", "s3"),)),
    Workload("d", "(d) miss -> private 302 (peers: unsigned)", (Url("/uploads/private/missing.pdf", "s3priv"),)),
    Workload("e", "(e) proxied to keep-alive backend", (Url("/legacy/page.html", "legacy"),)),
    Workload("f", "(f) conditional GET -> 304", (Url("/uploads/1k.bin", "304"),)),
    Workload("g", "(g) browser mix (1 page, 6 assets, 2 x 302, 1 x 304)", MIX),
)
ETAG_PATHS = ("/uploads/1k.bin", "/uploads/assets/site.css")


def body_size(run, url):
    """The body a correct answer has, in bytes (302 bodies vary: 0)."""
    if url.kind == "file":
        return (run.docroot / url.path.lstrip("/")).stat().st_size
    return run.legacy_size if url.kind == "legacy" else 0


def expected_bytes(run, w):
    """The mean body bytes per response of a correct run (wrk's bytes / requests must be at
    least this), and the largest body (wrk also counts the bytes of the responses still in flight
    when it stops: at most one per connection)."""
    sizes = [body_size(run, u) for u in w.urls]
    return sum(sizes) // len(sizes), max(sizes)


@dataclass
class Answer:
    status: int  # 0: no answer
    head: str  # status line and headers
    headers: dict  # lower-case name -> value
    body: bytes


def http_get(port, path, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        body = r.read()
        head = "\n".join([f"HTTP/{r.version / 10:.1f} {r.status} {r.reason}",
                          *(f"{k}: {v}" for k, v in r.getheaders())])
        return Answer(r.status, head, {k.lower(): v for k, v in r.getheaders()}, body)
    except (OSError, http.client.HTTPException) as e:
        return Answer(0, f"(no answer: {e})", {}, b"")
    finally:
        conn.close()


def fetch_etags(run, s):
    """ETags differ between servers: each server's own, per path (fetched after each start)."""
    for path in ETAG_PATHS:
        etag = http_get(run.cfg.port(s), path).headers.get("etag")
        if not etag:
            die(f"{s} sent no ETag for {path}")
        run.etag[s, path] = etag


def check_url(run, s, url, w, n):
    """One answer: the expected status and the expected kind of answer."""
    inm = {"If-None-Match": run.etag[s, url.path]} if url.kind == "304" else {}
    a = http_get(run.cfg.port(s), url.path, inm)
    loc = a.headers.get("location", "")
    size = len(a.body)
    fail = ""
    if url.kind == "file":
        want = (run.docroot / url.path.lstrip("/")).read_bytes()
        if a.status != 200 or size != len(want):
            fail = f"expected 200 with the file's {len(want)} bytes"
        elif a.body != want:
            saved = run.raw / f"check-failed-w{n}-{s}-{Path(url.path).name}"
            saved.write_bytes(a.body)
            Path(f"{saved}.expected").write_bytes(want)
            diffs = [i for i, (x, y) in enumerate(zip(a.body, want)) if x != y]
            first = diffs[0]
            fail = (f"expected 200 with the file's {len(want)} bytes; the size is right but {len(diffs)} bytes "
                    f"differ, the first: byte {first + 1}, line {a.body[:first].count(10) + 1} "
                    f"(body saved: {saved}, the file: {saved}.expected)")
    elif url.kind == "s3" or (url.kind == "s3priv" and s != "spillway"):
        if not (a.status == 302 and loc == S3_BASE + url.path):
            fail = f"expected 302 to {S3_BASE}{url.path}"
    elif url.kind == "s3priv":
        if not (a.status == 302 and loc.startswith(f"{S3_BASE}{url.path}?") and "X-Amz-Signature=" in loc):
            fail = f"expected 302 to a presigned {S3_BASE}{url.path}?...X-Amz-Signature=..."
    elif url.kind == "legacy":
        if not (a.status == 200 and LEGACY_MARKER.encode() in a.body
                and a.headers.get("x-backend-saw-xff") == "127.0.0.1"):
            fail = (f"expected 200 with the backend's page (containing '{LEGACY_MARKER}'), "
                    "the backend having seen X-Forwarded-For: 127.0.0.1")
    elif url.kind == "304":
        if not (a.status == 304 and size == 0):
            fail = f"expected 304 for If-None-Match: {inm['If-None-Match']}"
    if fail:
        sent = f" (If-None-Match: {inm['If-None-Match']})" if inm else ""
        die(f"check failed before workload {w.name}: {s} GET {url.path}{sent}: {fail};\n"
            f"got status {a.status:03d}, {size} body bytes{', Location: ' + loc if loc else ''}. "
            f"Response headers:\n{a.head}\n(server logs: {run.raw})")


def check(run, w, s, n):
    alive(run, s)
    for url in w.urls:
        check_url(run, s, url, w, n)


# ---------------------------------------------------------------------------------------------
# wrk
# ---------------------------------------------------------------------------------------------
WRKSTAT_FIELDS = ("requests", "duration_us", "bytes", "p50_us", "p99_us", "max_us",
                  "connect", "read", "write", "timeout", "status")


@dataclass
class Results:
    """Per (workers, wrk threads, workload, server): one entry per round, errors summed."""
    rps: dict = field(default_factory=lambda: defaultdict(list))
    p99: dict = field(default_factory=lambda: defaultdict(list))
    mibs: dict = field(default_factory=lambda: defaultdict(list))
    non: dict = field(default_factory=lambda: defaultdict(int))  # responses with status >= 400
    sock: dict = field(default_factory=lambda: defaultdict(int))  # connect/read/write/timeout errors


def wrk_argv(run, w, s, threads, duration):
    port = run.cfg.port(s)
    argv = ["wrk", f"-t{threads}", f"-c{run.cfg.connections}", f"-d{duration}", "--latency"]
    if w.mix:
        argv += ["-s", HERE / "browser.lua", f"http://127.0.0.1:{port}/", "--"]
        argv += [f"{u.path}|{run.etag[s, u.path]}" if u.kind == "304" else u.path for u in w.urls]
    else:
        u = w.urls[0]
        argv += ["-s", HERE / "report.lua"]
        if u.kind == "304":
            argv += ["-H", f"If-None-Match: {run.etag[s, u.path]}"]
        argv.append(f"http://127.0.0.1:{port}{u.path}")
    return argv


def parse_wrkstat(text):
    """report.lua's last WRKSTAT line as a dict of numbers."""
    lines = [l for l in text.splitlines() if l.startswith("WRKSTAT ")]
    if not lines:
        return None
    kv = dict(item.split("=", 1) for item in lines[-1].split()[1:])
    return {k: int(float(kv[k])) for k in WRKSTAT_FIELDS}


def run_wrk(run, res, w, s, n, threads, rnd, duration):
    """One wrk run (rnd: a round number, or "warmup"); records its numbers unless a warm-up."""
    out = run.raw / f"wrk-w{n}-t{threads}-{w.key}-{s}-{rnd}.txt"
    if run.procs.run(wrk_argv(run, w, s, threads, duration), out) != 0:
        die(f"wrk failed ({s}, {w.name}):\n{tail(out)}")
    if rnd == "warmup":
        return
    v = parse_wrkstat(out.read_text(errors="replace"))
    if v is None:
        die(f"no WRKSTAT line in {out}")
    reqs, secs, nbytes = v["requests"], v["duration_us"] / 1e6, v["bytes"]
    if reqs <= 0:
        die(f"wrk completed no request ({s}, {w.name}): {out}")
    rps, mibs = float(f"{reqs / secs:.1f}"), float(f"{nbytes / 1048576 / secs:.1f}")
    bpr = int(f"{nbytes / reqs:.0f}")
    sock = v["connect"] + v["read"] + v["write"] + v["timeout"]
    # Under load too, the answers must be the checked ones: bytes read per response are at least
    # the expected body, and at most that plus headers (a 302's body too) and the partial
    # responses wrk stopped in.
    lo, largest = expected_bytes(run, w)
    hi = int(f"{lo + run.cfg.connections * largest / reqs + (2048 if w.key in 'cd' else 1024):.0f}")
    if not lo <= bpr <= hi:
        die(f"{s}, {w.name}: wrk read {bpr} bytes per response; correct answers have {lo} to {hi} (raw: {out})")
    key = (n, threads, w.key, s)
    res.rps[key].append(rps)
    res.p99[key].append(v["p99_us"])
    res.mibs[key].append(mibs)
    res.non[key] += v["status"]
    res.sock[key] += sock
    log(f"  {s:<8} {w.name:<52} {rps:10.1f} req/s  p99 {v['p99_us']:8d} us  {bpr} B/resp  "
        f"non-2xx/3xx {v['status']}  socket errors {sock} "
        f"(c{v['connect']} r{v['read']} w{v['write']} t{v['timeout']})")


# ---------------------------------------------------------------------------------------------
# The runs, one set per worker count
# ---------------------------------------------------------------------------------------------
@dataclass
class Memory:
    """Per (workers, server)."""
    idle: dict = field(default_factory=dict)  # KiB after startup
    peak: dict = field(default_factory=dict)  # VmHWM after streaming the 1 GiB file
    streamed: dict = field(default_factory=dict)  # MiB
    load_peak: dict = field(default_factory=dict)  # VmHWM after the wrk runs
    conns: dict = field(default_factory=dict)  # ConnMem


def measure(run, n, res, mem):
    cfg = run.cfg
    log(f"=== {n} worker(s) each")
    start_servers(run, n)
    time.sleep(1)
    for s in SERVERS:
        mem.idle[n, s] = settled_kib(run, s)

    log(f"memory: streaming the 1 GiB file to curl --limit-rate {cfg.mem_rate} for {cfg.mem_seconds}s, each server")
    for s in SERVERS:
        mem.streamed[n, s] = stream_big(run, s, n)
        mem.peak[n, s] = server_kib(run, s, "VmHWM")
        alive(run, s)

    if cfg.conn_mem_n > 0:
        log(f"memory: {cfg.conn_mem_n} idle keep-alive connections, each server")
        for s in SERVERS:
            mem.conns[n, s] = conn_mem(run, s, n)

    for s in SERVERS:
        fetch_etags(run, s)
        if not reset_peak(run, s):
            run.peak_reset_ok = False

    if not re.fullmatch(r"0[smh]?", cfg.warmup):
        log(f"warm-up: {cfg.warmup} per workload and server (not measured)")
        for w in WORKLOADS:
            for s in SERVERS:
                check(run, w, s, n)
                run_wrk(run, res, w, s, n, cfg.wrk_threads[0], "warmup", cfg.warmup)

    for r in range(1, cfg.rounds + 1):
        # rotate which server goes first, so drift within a round evens out over the rounds
        k = (r - 1) % len(SERVERS)
        order = SERVERS[k:] + SERVERS[:k]
        for t in cfg.wrk_threads:
            log(f"round {r}/{cfg.rounds} ({n} worker(s)): wrk -t{t} -c{cfg.connections} -d{cfg.duration}, "
                f"order: {' '.join(order)}")
            for w in WORKLOADS:
                for s in order:
                    check(run, w, s, n)
                    run_wrk(run, res, w, s, n, t, r, cfg.duration)

    for s in SERVERS:
        alive(run, s)
        mem.load_peak[n, s] = server_kib(run, s, "VmHWM")
    stop_servers(run, n)


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
def fmt_ms(us):
    return f"{us:.0f} us" if us < 1000 else f"{us / 1000:.2f} ms"


def ratio(a, b):
    return f"{a / b if b else 0:.2f}"


def workers_line(n):
    lw = f"`server.max-worker = {n}` (a parent and {n} workers)" if n > 1 else \
        "one process (`server.max-worker` not set)"
    return f"spillway `threads: {n}`, nginx `worker_processes {n}`, lighttpd {lw}"


def throughput_table(run, res, n, t, errors):
    rows = ["| workload | spillway req/s | nginx req/s | lighttpd req/s | spillway/nginx | spillway/lighttpd "
            "| p99 spillway / nginx / lighttpd | errors (s / n / l) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    wl = "workers" if n > 1 else "worker"
    for w in WORKLOADS:
        med, p99, cell, errs = {}, {}, {}, {}
        for s in SERVERS:
            key = (n, t, w.key, s)
            med[s] = statistics.median(res.rps[key])
            p99[s] = fmt_ms(statistics.median(res.p99[key]))
            cell[s] = f"{med[s]:.0f}"
            if w.key == "b":
                cell[s] += f" ({statistics.median(res.mibs[key]):.0f} MiB/s)"
            errs[s] = res.non[key] + res.sock[key]
            if errs[s]:
                errors.append(f"- {n} {wl}, wrk -t{t}, {s}, {w.name}: {res.non[key]} responses with status >= 400, "
                              f"{res.sock[key]} socket errors (all rounds; raw: {run.raw}/wrk-w{n}-t{t}-{w.key}-{s}-*.txt)")
        rows.append(f"| {w.name} | {cell['spillway']} | {cell['nginx']} | {cell['lighttpd']} "
                    f"| {ratio(med['spillway'], med['nginx'])} | {ratio(med['spillway'], med['lighttpd'])} "
                    f"| {p99['spillway']} / {p99['nginx']} / {p99['lighttpd']} "
                    f"| {errs['spillway']} / {errs['nginx']} / {errs['lighttpd']} |")
    return "\n".join(rows)


def memory_tables(run, mem, n):
    cfg = run.cfg
    peak_head = "peak during the wrk runs" if run.peak_reset_ok else "peak since startup (VmHWM could not be reset)"
    rows = [f"| | idle after startup | peak while streaming 1 GiB to `curl --limit-rate {cfg.mem_rate}` for "
            f"{cfg.mem_seconds}s | peak - idle | streamed | {peak_head} |",
            "|---|---:|---:|---:|---:|---:|"]
    for s in SERVERS:
        idle, peak = mem.idle[n, s], mem.peak[n, s]
        rows.append(f"| {s} | {mib(idle)} | {mib(peak)} | {mib(peak - idle)} | {mem.streamed[n, s]} MiB "
                    f"| {mib(mem.load_peak[n, s])} |")
    text = "\n".join(rows) + "\n"
    if cfg.conn_mem_n > 0:
        c = cfg.conn_mem_n
        rows = [f"\n{c} idle keep-alive connections (each sent one `GET /uploads/1k.bin` and read the whole "
                "answer, then stayed open; measured once all were answered, and again once the server had "
                "closed its side of every one, as `ss` shows):\n",
                f"| | RSS idle | RSS with {c} open | growth per connection | RSS after close | after close - idle |",
                "|---|---:|---:|---:|---:|---:|"]
        for s in SERVERS:
            m = mem.conns[n, s]
            rows.append(f"| {s} | {mib(m.idle)} | {mib(m.open)} | {(m.open - m.idle) / c:.1f} KiB "
                        f"| {mib(m.after)} | {mib(m.after - m.idle)} |")
        text += "\n".join(rows) + "\n"
    return text


def most_frequent(lines, strip):
    """Like sed | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8."""
    counts = Counter(re.sub(strip, "", l)[:200] for l in lines)
    top = sorted(counts.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)[:8]
    return "\n".join(f"{n:7d} {l}" for l, n in top)


def log_lines(pattern, skip=None):
    lines = []
    for f in sorted(glob.glob(pattern)):
        lines += [l for l in Path(f).read_text(errors="replace").splitlines()
                  if l and not (skip and re.search(skip, l))]
    return lines


def output(argv, stderr=True):
    """A command's output (with its stderr: where nginx -v writes), '' if it cannot run."""
    try:
        p = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
    except OSError:
        return ""
    return (p.stdout + (p.stderr if stderr else "")).strip()


def machine_facts(run):
    first = lambda s: s.splitlines()[0] if s else ""
    rev = output(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    if output(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"]):
        rev += " + uncommitted changes"
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), "unknown")
    memtotal = next(int(l.split()[1]) for l in Path("/proc/meminfo").read_text().splitlines()
                    if l.startswith("MemTotal"))
    return dict(
        nproc=len(os.sched_getaffinity(0)), cpu=cpu, kernel=os.uname().release, ram=f"{memtotal / 1048576:.0f} GiB RAM",
        rev=rev, nginx=output([run.nginx, "-v"]).replace("nginx version: ", ""),
        lighttpd=(first(output([run.lighttpd, "-v"])).split() or [""])[0],
        magnet=output(["dpkg-query", "-W", "-f", "${Package} ${Version}", "lighttpd-modules-lua"], stderr=False),
        wrk=" ".join(first(output(["wrk", "-v"])).split()[:2]))


def report(run, res, mem, started, loadavg, cpu_idle):
    cfg, f = run.cfg, machine_facts(run)
    describe = {"file": lambda u: f"`{u.path}` ({body_size(run, u)} B)", "s3": lambda u: f"`{u.path}` (302)",
                "legacy": lambda u: f"`{u.path}` (proxied)", "304": lambda u: f"`{u.path}` with If-None-Match (304)"}
    mix_line = ", ".join(describe[u.kind](u) for u in MIX)
    threads = " / ".join(f"-t{t}" for t in cfg.wrk_threads)
    if len(cfg.wrk_threads) > 1:
        threads += " (a table each, in the same rounds)"
    wrk_line = f"wrk {threads} -c{cfg.connections} -d{cfg.duration} --latency, keep-alive"
    text = f"""# spillway vs nginx vs lighttpd: load benchmark

{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())} -- `{cfg.command()}`

- machine: {f['nproc']} CPUs ({f['cpu']}), kernel {f['kernel']}, {f['ram']}; before the servers started: load average {loadavg}, CPU idle {cpu_idle}% (other work on the machine skews every column)
- versions: spillway {f['rev']} (release build), {f['nginx']}, {f['lighttpd']} ({f['magnet'] or 'mod_magnet'}), {f['wrk']}; all on 127.0.0.1, one document root
- spillway: `threads: N`, `access_log: format: off`, `RUST_LOG=warn`, keep-alive upstream pool (`idle_timeout: 60s`); presigns private misses (d)
- nginx (tuned): `worker_processes N`, `worker_rlimit_nofile {run.nofile}`, `sendfile {cfg.nginx_sendfile}`, `tcp_nopush {cfg.nginx_sendfile}`, `open_file_cache max=10000 inactive=60s`, `open_file_cache_valid 60s`, `open_file_cache_min_uses 1`, `open_file_cache_errors on` (misses cached too), `etag on`, `access_log off`, `keepalive_requests 1000000`, `try_files $uri @s3` -> `return 302`, upstream `keepalive 64` with `proxy_http_version 1.1`; cannot presign: (d) is an unsigned 302
- lighttpd: mod_magnet script for `/uploads/` at `magnet.attract-physical-path-to` (`lighty.c.stat(physical.path)`: a file is left to mod_staticfile with its ETag and 304s, anything else is answered 302), `server.max-worker` not set at 1 worker (lighttpd's recommendation) and N above, `server.stat-cache-engine = "simple"` (misses not cached), `server.network-backend = "sendfile"`, no mod_accesslog, `server.max-keep-alive-requests = 65535` (the most: a 16-bit option), `server.max-keep-alive-idle = 65`, `server.max-fds = {run.lighttpd_max_fds}` (the open file limit here, at most 65535), `static-file.etags` and `etag.use-inode/mtime/size` enabled; mod_proxy for everything else (adds X-Forwarded-For; lighttpd 1.4 has no upstream keep-alive: one backend connection per request, `Connection: close`); cannot presign: (d) is an unsigned 302
- backend: a separate nginx ({cfg.backend_workers} worker) serving a {run.legacy_size}-byte static page for every path, keep-alive, echoing the X-Forwarded-For it saw
- {wrk_line}; {cfg.rounds} round(s), the three servers in turn with the first one rotating every round, warm-up {cfg.warmup}; medians of the rounds; wrk runs on the same {f['nproc']} CPUs as the servers
- (g) cycles on each connection through: {mix_line} (`benches/load/browser.lua`)
- before every wrk run each server's answer to every URL of the workload is checked (status; body size and bytes, Location, backend page and X-Forwarded-For, as fits), and after it wrk's bytes per response must fit the expected answers
"""
    errors = []
    for n in cfg.workers:
        text += f"\n## {n} {'workers' if n > 1 else 'worker'} each\n\n{workers_line(n)}.\n\n"
        for t in cfg.wrk_threads:
            text += f"### wrk -t{t} -c{cfg.connections}\n\n{throughput_table(run, res, n, t, errors)}\n\n"
        text += ("Memory (VmRSS / VmHWM from /proc, summed over a server's processes: nginx master + workers, "
                 "lighttpd with its workers, spillway one process):\n\n" + memory_tables(run, mem, n))
    if errors:
        text += ("\nErrors reported by wrk (responses with status >= 400, and connect/read/write/timeout errors):\n"
                 + "".join(e + "\n" for e in errors))
    else:
        text += "\nwrk reported no responses with status >= 400 and no socket errors.\n"
    lines = log_lines(f"{run.raw}/spillway-w*.log")
    if lines:  # tracing's lines start with a timestamp; group the rest
        text += (f"\nspillway wrote {len(lines)} line(s) to stdout/stderr with RUST_LOG=warn ({run.raw}/spillway-w*.log), "
                 "most frequent first\n(wrk stops each run with requests in flight, and the memory test's curl stops "
                 f"mid-body):\n\n```\n{most_frequent(lines, r'^[0-9]{4}-[0-9-]+T[0-9:.]+Z +')}\n```\n")
    lines = log_lines(f"{run.raw}/lighttpd-w*.log", skip=r"server started|server stopped|server (graceful )?shutdown")
    if lines:  # lighttpd's error log, less its start and stop lines
        text += (f"\nlighttpd logged {len(lines)} line(s) besides starting and stopping ({run.raw}/lighttpd-w*.log), "
                 f"most frequent first:\n\n```\n{most_frequent(lines, r'^[0-9]{4}-[0-9-]+ [0-9:]+: +')}\n```\n")
    text += f"\nTotal run time: {time.time() - started:.0f}s (including build and setup).\n"
    return text


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------
def on_signal(signum, _frame):
    raise SystemExit(128 + signum)  # 130 on Ctrl-C, 143 on SIGTERM; cleanup runs in main()


def main():
    if sys.version_info < (3, 11):
        sys.exit("[load] ERROR: bench.py needs Python 3.11 or later")
    started = time.time()
    loadavg = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    os.chdir(ROOT)
    target_dir = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
    out_dir = target_dir / "load"
    run = None
    rc = 1
    try:
        run = Run(cfg=read_config(), procs=Procs(), raw=out_dir / "raw")
        install_tools(run)
        build(run, target_dir)
        make_docroot(run)
        raise_nofile(run)
        cpu_idle = cpu_idle_pct()
        if cpu_idle < 90:
            log(f"warning: the CPUs are only {cpu_idle}% idle before the run; results will be noisy")
        for knob in PORT_KNOBS:
            if port_open(run.cfg.ports[knob]):
                die(f"127.0.0.1:{run.cfg.ports[knob]} is already in use "
                    "(set SPILLWAY_PORT / NGINX_PORT / BACKEND_PORT / LIGHTTPD_PORT)")
        start_backend(run)
        res, mem = Results(), Memory()
        for n in run.cfg.workers:
            measure(run, n, res, mem)
        text = report(run, res, mem, started, loadavg, cpu_idle)
        print(f"\n{text}", flush=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "results.md").write_text(text)
        log(f"written: {out_dir}/results.md (raw wrk output, configs and logs: {run.raw})")
        rc = 0
    except Fatal as e:
        print(f"\n[load] ERROR: {e}", file=sys.stderr, flush=True)
    except SystemExit as e:
        rc = e.code if isinstance(e.code, int) else 1
    finally:
        # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if run:
            run.procs.stop_all()
            remove_policy_rc(run)
            if run.work:
                shutil.rmtree(run.work, ignore_errors=True)
        if rc != 0:
            log(f"exited with status {rc}; all started processes stopped. Logs: {out_dir / 'raw'}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
