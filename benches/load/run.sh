#!/usr/bin/env bash
# Side-by-side load benchmark: spillway vs nginx vs lighttpd doing the same job on the same machine.
#
#   bash benches/load/run.sh                         # from the repo root; ~17 minutes on 2 cores
#   DURATION=3s ROUNDS=1 WORKERS=1 bash benches/load/run.sh    # quick smoke run
#
# What it does: builds spillway (cargo build --release), installs Debian's nginx-light, lighttpd,
# lighttpd-modules-lua, wrk (and curl, python3, iproute2, procps) with apt-get when missing (no
# system nginx or lighttpd service is started), generates one document root in a temp dir, and starts on 127.0.0.1 only: spillway;
# nginx configured as the same redirect-or-serve proxy (tuned: open_file_cache, sendfile);
# lighttpd 1.4 with a mod_magnet Lua script "stat the file, else 302 to S3" (the project's seed)
# and mod_proxy; and a second nginx as the keep-alive "legacy" backend all three proxy to.
# For each worker count in WORKERS it (re)starts the three with that many workers, measures
# resident memory while a rate-limited client streams a 1 GiB file and while CONN_MEM_N idle
# keep-alive connections are open, then checks every workload's answer from every server with
# curl (status, body size and bytes, Location, backend marker) before each wrk run, runs wrk
# against the three in turn ROUNDS times (the first server rotating every round), and prints
# medians. Every process it starts is stopped on exit (trap), also on failure or Ctrl-C.
# Results: stdout and target/load/results.md; raw wrk output, configs and logs: target/load/raw/.
#
# Tuning (environment):
#   DURATION=7s        wrk duration of each measured run
#   CONNECTIONS=64     wrk connections (keep-alive)
#   ROUNDS=3           rounds over the three servers; medians are reported
#   WORKERS="1 2"      server worker counts to measure, one table each: spillway `threads:`,
#                      nginx `worker_processes`, lighttpd `server.max-worker` (unset for 1)
#                      (THREADS=n is taken as WORKERS=n when WORKERS is not set)
#   WRK_THREADS=2      wrk threads (wrk shares the machine's cores with the servers)
#   WARMUP=1s          unmeasured wrk run per workload and server before round 1 (0 = none)
#   BACKEND_WORKERS=1  worker_processes of the legacy backend nginx
#   MEM_SECONDS=8      how long the slow reader streams the 1 GiB file
#   MEM_RATE=50M       its curl --limit-rate
#   CONN_MEM_N=2000    idle keep-alive connections held for the connection-memory test (0 = skip)
#   NGINX_SENDFILE=on  nginx `sendfile` and `tcp_nopush` (Debian's default is sendfile on)
#   SPILLWAY_PORT=18080 NGINX_PORT=18081 BACKEND_PORT=18082 LIGHTTPD_PORT=18083
#   SKIP_BUILD=1       use the existing target/release/spillway
#   SKIP_INSTALL=1     never call apt-get (fail if a tool is missing)

# The whole script is one brace group: bash parses it completely before running it, so editing
# this file during a run cannot change the run.
{
set -Eeuo pipefail

DURATION=${DURATION:-7s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
WORKERS=${WORKERS:-${THREADS:-1 2}}
WRK_THREADS=${WRK_THREADS:-2}
WARMUP=${WARMUP:-1s}
BACKEND_WORKERS=${BACKEND_WORKERS:-1}
MEM_SECONDS=${MEM_SECONDS:-8}
MEM_RATE=${MEM_RATE:-50M}
CONN_MEM_N=${CONN_MEM_N:-2000}
NGINX_SENDFILE=${NGINX_SENDFILE:-on}
SPILLWAY_PORT=${SPILLWAY_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
BACKEND_PORT=${BACKEND_PORT:-18082}
LIGHTTPD_PORT=${LIGHTTPD_PORT:-18083}
SKIP_BUILD=${SKIP_BUILD:-0}
SKIP_INSTALL=${SKIP_INSTALL:-0}

START_TIME=$(date +%s)
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
# percent of CPU time idle over one second, to show whether something else was running
cpu_idle_pct() {
    local a b
    a=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / { print $5 + $6, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " "); t = y[2] - x[2]; printf "%.0f", t ? 100 * (y[1] - x[1]) / t : 0 }'
}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
cd "$ROOT"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT_DIR=$TARGET_DIR/load
RAW_DIR=$OUT_DIR/raw

log() { printf '[load] %s\n' "$*" >&2; }
die() {
    printf '\n[load] ERROR: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
is_uint() { [[ $1 =~ ^[0-9]+$ ]]; }
is_uint "$CONNECTIONS" && ((CONNECTIONS >= 1)) || die "CONNECTIONS must be a positive integer (got '$CONNECTIONS')"
is_uint "$ROUNDS" && ((ROUNDS >= 1)) || die "ROUNDS must be a positive integer (got '$ROUNDS')"
read -r -a WORKER_COUNTS <<<"$WORKERS"
((${#WORKER_COUNTS[@]} >= 1)) || die "WORKERS must list at least one worker count (got '$WORKERS')"
for n in "${WORKER_COUNTS[@]}"; do
    is_uint "$n" && ((n >= 1 && n <= 64)) || die "WORKERS must be worker counts from 1 to 64 (got '$WORKERS')"
done
[[ $(printf '%s\n' "${WORKER_COUNTS[@]}" | sort -u | wc -l) == "${#WORKER_COUNTS[@]}" ]] ||
    die "WORKERS lists a worker count twice (got '$WORKERS')"
is_uint "$WRK_THREADS" && ((WRK_THREADS >= 1)) || die "WRK_THREADS must be a positive integer (got '$WRK_THREADS')"
is_uint "$BACKEND_WORKERS" && ((BACKEND_WORKERS >= 1)) || die "BACKEND_WORKERS must be a positive integer"
is_uint "$MEM_SECONDS" && ((MEM_SECONDS >= 1)) || die "MEM_SECONDS must be a positive integer (seconds)"
# nginx has worker_connections 8192 (per worker, upstream connections included)
is_uint "$CONN_MEM_N" && ((CONN_MEM_N <= 8000)) || die "CONN_MEM_N must be an integer from 0 to 8000 (got '$CONN_MEM_N')"
((WRK_THREADS <= CONNECTIONS)) || die "WRK_THREADS ($WRK_THREADS) must not exceed CONNECTIONS ($CONNECTIONS)"
[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s, 2m (got '$DURATION')"
[[ $WARMUP =~ ^[0-9]+[smh]?$ ]] || die "WARMUP must look like 1s or 0 (got '$WARMUP')"
[[ $NGINX_SENDFILE == on || $NGINX_SENDFILE == off ]] || die "NGINX_SENDFILE must be on or off"
for p in "$SPILLWAY_PORT" "$NGINX_PORT" "$BACKEND_PORT" "$LIGHTTPD_PORT"; do
    is_uint "$p" && ((p > 0 && p < 65536)) || die "bad port '$p'"
done
[[ $(printf '%s\n' "$SPILLWAY_PORT" "$NGINX_PORT" "$BACKEND_PORT" "$LIGHTTPD_PORT" | sort -u | wc -l) == 4 ]] ||
    die "SPILLWAY_PORT, NGINX_PORT, BACKEND_PORT and LIGHTTPD_PORT must differ"

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script starts is in PIDS and is stopped on exit, whatever happens.
# ---------------------------------------------------------------------------------------------
PIDS=()
WORK=""
POLICY_RC_CREATED=0

running() { # pid: exists and is not a zombie
    local st
    st=$(awk '{ print $3 }' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $st && $st != Z ]]
}

stop_pid() { # pid signal
    local pid=$1 sig=$2 children i
    kill -0 "$pid" 2>/dev/null || return 0
    # nginx and lighttpd masters: remember their workers, which are not killed with the master on SIGKILL
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIG$sig; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    # its children (nginx or lighttpd workers) exit with it, or survive a SIGKILLed master
    for c in $children; do
        for ((i = 0; i < 50; i++)); do
            running "$c" || continue 2
            sleep 0.1
        done
        log "pid $c (a worker of $pid) did not stop; SIGKILL"
        kill -KILL "$c" 2>/dev/null || true
    done
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
    exec 8>&- # the idle-connection holder's stdin, if open
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        local entry=${PIDS[i]} # "pid:signal:name"
        local pid=${entry%%:*} rest=${entry#*:}
        local sig=${rest%%:*}
        stop_pid "$pid" "$sig"
    done
    if ((POLICY_RC_CREATED)); then rm -f /usr/sbin/policy-rc.d; fi
    if [[ -n $WORK && -d $WORK ]]; then rm -rf "$WORK"; fi
    if ((rc != 0)); then
        log "exited with status $rc; all started processes stopped. Logs: $RAW_DIR"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "failed: line $LINENO: $BASH_COMMAND"' ERR
trap 'exit 130' INT
trap 'exit 143' TERM

track() { PIDS+=("$1:$2:$3"); } # pid stop-signal name
untrack() { # pid: forget a process that has been waited for (its pid may be reused)
    local i
    for i in "${!PIDS[@]}"; do
        [[ ${PIDS[i]%%:*} == "$1" ]] && unset 'PIDS[i]'
    done
    PIDS=("${PIDS[@]}")
}

# Runs a bounded command in the background so that a signal to this script interrupts `wait` and
# the trap stops the command too.
run_tracked() { # outfile cmd...
    local out=$1
    shift
    "$@" >"$out" 2>&1 &
    local pid=$!
    track "$pid" TERM "$1"
    local rc=0
    wait "$pid" || rc=$?
    untrack "$pid"
    return "$rc"
}

# ---------------------------------------------------------------------------------------------
# Tools
# ---------------------------------------------------------------------------------------------
find_bin() { # name -> path, or nothing (sbin is not on every root PATH)
    command -v "$1" 2>/dev/null || { [[ -x /usr/sbin/$1 ]] && echo "/usr/sbin/$1"; } || true
}
# lighttpd's modules: Debian's lighttpd-modules-lua brings mod_magnet
magnet_module() {
    local d
    for d in /usr/lib/lighttpd /usr/lib64/lighttpd /usr/local/lib/lighttpd /usr/lib/*-linux-gnu/lighttpd; do
        [[ -e $d/mod_magnet.so ]] && { echo "$d/mod_magnet.so"; return 0; }
    done
    return 0
}
NGINX_BIN=$(find_bin nginx)
LIGHTTPD_BIN=$(find_bin lighttpd)
missing=()
[[ -n $NGINX_BIN ]] || missing+=(nginx-light)
[[ -n $LIGHTTPD_BIN ]] || missing+=(lighttpd)
[[ -n $(magnet_module) ]] || missing+=(lighttpd-modules-lua)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v python3 >/dev/null || missing+=(python3)
command -v ss >/dev/null || missing+=(iproute2)
command -v pgrep >/dev/null || missing+=(procps)
if ((${#missing[@]})); then
    ((SKIP_INSTALL == 0)) || die "missing: ${missing[*]} (SKIP_INSTALL=1)"
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing: ${missing[*]}; run as root or install them"
        SUDO=(sudo)
    fi
    # Keep apt from starting a system-wide nginx or lighttpd service (port 80, all addresses).
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]}" tee /usr/sbin/policy-rc.d >/dev/null
        "${SUDO[@]}" chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    log "installing ${missing[*]} with apt-get"
    "${SUDO[@]}" apt-get update -q
    if ! "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"; then
        # nginx-light was folded into `nginx` after Debian 12
        [[ " ${missing[*]} " == *" nginx-light "* ]] || die "apt-get install ${missing[*]} failed"
        log "nginx-light not installable; trying the nginx package"
        missing=("${missing[@]/nginx-light/nginx}")
        "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" ||
            die "apt-get install ${missing[*]} failed"
    fi
    if ((POLICY_RC_CREATED)); then
        "${SUDO[@]}" rm -f /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=0
    fi
    NGINX_BIN=$(find_bin nginx)
    LIGHTTPD_BIN=$(find_bin lighttpd)
fi
[[ -n $NGINX_BIN && -x $NGINX_BIN ]] || die "nginx not found after install"
[[ -r /etc/nginx/mime.types ]] || die "/etc/nginx/mime.types missing (package nginx-common)"
[[ -n $LIGHTTPD_BIN && -x $LIGHTTPD_BIN ]] || die "lighttpd not found after install"
[[ -n $(magnet_module) ]] || die "lighttpd's mod_magnet.so not found (package lighttpd-modules-lua)"
for t in wrk curl python3 ss pgrep; do
    command -v "$t" >/dev/null || die "$t not found after install"
done

# ---------------------------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------------------------
SPILLWAY_BIN=$TARGET_DIR/release/spillway
if ((SKIP_BUILD == 0)); then
    log "cargo build --release"
    cargo build --release || die "cargo build --release failed (someone mid-edit in src/? retry, or SKIP_BUILD=1)"
fi
[[ -x $SPILLWAY_BIN ]] || die "$SPILLWAY_BIN not found (build it, or unset SKIP_BUILD)"

# ---------------------------------------------------------------------------------------------
# Document root
# ---------------------------------------------------------------------------------------------
mkdir -p "$RAW_DIR"
rm -f "$RAW_DIR"/*.txt "$RAW_DIR"/*.log "$RAW_DIR"/*.conf "$RAW_DIR"/*.yaml "$RAW_DIR"/*.lua
WORK=$(mktemp -d /tmp/spillway-load.XXXXXX)
chmod 755 "$WORK" # nginx and lighttpd workers run as an unprivileged user and must read the docroot
DOCROOT=$WORK/www
mkdir -p "$DOCROOT/uploads/public" "$DOCROOT/uploads/private" "$DOCROOT/uploads/assets" "$WORK/legacy"
head -c 1024 /dev/urandom >"$DOCROOT/uploads/1k.bin"
head -c 1048576 /dev/urandom >"$DOCROOT/uploads/1m.bin"
truncate -s 1G "$DOCROOT/uploads/1g.bin" # sparse: reads are page-cache zeroes, no disk I/O
# the browser mix's static assets (no server compresses: the body is the file)
head -c 2048 /dev/urandom >"$DOCROOT/uploads/assets/site.css"
head -c 1024 /dev/urandom >"$DOCROOT/uploads/assets/print.css"
head -c 8192 /dev/urandom >"$DOCROOT/uploads/assets/app.js"
head -c 24576 /dev/urandom >"$DOCROOT/uploads/assets/vendor.js"
head -c 30720 /dev/urandom >"$DOCROOT/uploads/assets/hero.png"
head -c 4096 /dev/urandom >"$DOCROOT/uploads/assets/logo.png"
LEGACY_MARKER="legacy-backend-page"
{
    printf '<!doctype html>\n<html><head><title>legacy</title></head><body>\n'
    printf '<h1>%s</h1>\n' "$LEGACY_MARKER"
    printf '<p>The old application, served by a separate nginx on 127.0.0.1:%s.</p>\n' "$BACKEND_PORT"
    printf '</body></html>\n'
} >"$WORK/legacy/index.html"
LEGACY_SIZE=$(stat -c %s "$WORK/legacy/index.html")
chmod -R a+rX "$WORK"

# ---------------------------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------------------------
LIGHTTPD_USER_LINES="# server.username: not set (not started as root: runs as $(id -un))"
if ((EUID == 0)); then
    # like nginx's workers when started by root (user nobody), not as root
    LIGHTTPD_USER_LINES="server.username      = \"nobody\"\\nserver.groupname     = \"$(id -gn nobody)\""
fi

render() { # template output workers extra-sed-args...
    local tmpl=$1 out=$2 workers=$3
    shift 3
    sed -e "s|@WORKERS@|$workers|g" \
        -e "s|@BACKEND_WORKERS@|$BACKEND_WORKERS|g" \
        -e "s|@SPILLWAY_PORT@|$SPILLWAY_PORT|g" \
        -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
        -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@LIGHTTPD_PORT@|$LIGHTTPD_PORT|g" \
        -e "s|@DOCROOT@|$DOCROOT|g" \
        -e "s|@LEGACY_ROOT@|$WORK/legacy|g" \
        -e "s|@SENDFILE@|$NGINX_SENDFILE|g" \
        -e "s|@NOFILE@|$NOFILE|g" \
        -e "s|@LIGHTTPD_MAX_FDS@|$LIGHTTPD_MAX_FDS|g" \
        "$@" "$tmpl" >"$out"
    if grep -n '@[A-Z_]*@' "$out" | grep -v '^[0-9]*:#' >/dev/null; then
        die "unsubstituted placeholder in $out"
    fi
}

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
[[ $NOFILE == unlimited ]] && NOFILE=65536
((NOFILE > 65536)) && NOFILE=65536
((NOFILE >= CONN_MEM_N + 256)) || die "open file limit $NOFILE is too low for CONN_MEM_N=$CONN_MEM_N"
# the servers' own fd limits: what this process has (a container may not allow raising it)
LIGHTTPD_MAX_FDS=$((NOFILE < 65535 ? NOFILE : 65535)) # a 16-bit option

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid name logfile...
    local port=$1 pid=$2 name=$3 i
    shift 3
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup; its logs ($*):
$(tail -n 20 "$@" 2>&1 || true)"
        if port_open "$port"; then return 0; fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 10 s; log tails:
$(tail -n 20 "$@" 2>&1 || true)"
}

wait_port_closed() { # port name
    local i
    for ((i = 0; i < 100; i++)); do
        port_open "$1" || return 0
        sleep 0.1
    done
    die "127.0.0.1:$1 still accepts connections 10 s after $2 was stopped"
}

CPU_IDLE_START=$(cpu_idle_pct)
((CPU_IDLE_START >= 90)) || log "warning: the CPUs are only ${CPU_IDLE_START}% idle before the run; results will be noisy"
for p in "$SPILLWAY_PORT" "$NGINX_PORT" "$BACKEND_PORT" "$LIGHTTPD_PORT"; do
    port_open "$p" && die "127.0.0.1:$p is already in use (set SPILLWAY_PORT / NGINX_PORT / BACKEND_PORT / LIGHTTPD_PORT)"
done

start_nginx() { # dir name port logname -> sets STARTED_PID
    local dir=$1 name=$2 port=$3 logname=$4
    "$NGINX_BIN" -e "$dir/startup-error.log" -p "$dir" -c "$dir/nginx.conf" >"$RAW_DIR/$logname.log" 2>&1 &
    STARTED_PID=$!
    track "$STARTED_PID" TERM "$name" # nginx: TERM = fast shutdown
    wait_port "$port" "$STARTED_PID" "$name" "$RAW_DIR/$logname.log" "$dir/startup-error.log" "$dir/error.log"
}

mkdir -p "$WORK/backend"
render "$HERE/backend.conf.tmpl" "$WORK/backend/nginx.conf" 1 -e "s|@PREFIX@|$WORK/backend|g"
cp "$WORK/backend/nginx.conf" "$RAW_DIR/backend.conf"
"$NGINX_BIN" -t -q -e "$WORK/backend/startup-error.log" -p "$WORK/backend" -c "$WORK/backend/nginx.conf" \
    >"$RAW_DIR/backend-check.log" 2>&1 || die "nginx -t rejected the generated backend config:
$(cat "$RAW_DIR/backend-check.log")"
log "starting backend nginx on 127.0.0.1:$BACKEND_PORT ($BACKEND_WORKERS worker)"
start_nginx "$WORK/backend" backend "$BACKEND_PORT" backend

SERVERS=(spillway nginx lighttpd)
declare -A PORT PID
PORT[spillway]=$SPILLWAY_PORT
PORT[nginx]=$NGINX_PORT
PORT[lighttpd]=$LIGHTTPD_PORT

# Renders and checks the three configs for `workers` workers, and starts the three servers.
start_servers() { # workers
    local n=$1 d=$WORK/w$1
    mkdir -p "$d/nginx" "$d/lighttpd"
    render "$HERE/spillway.yaml.tmpl" "$d/spillway.yaml" "$n"
    render "$HERE/nginx.conf.tmpl" "$d/nginx/nginx.conf" "$n" -e "s|@PREFIX@|$d/nginx|g"
    local max_worker="# server.max-worker: not set (one process, lighttpd's recommendation)"
    ((n > 1)) && max_worker="server.max-worker = $n"
    render "$HERE/lighttpd.conf.tmpl" "$d/lighttpd/lighttpd.conf" "$n" -e "s|@PREFIX@|$d/lighttpd|g" \
        -e "s|@LIGHTTPD_MAX_WORKER@|$max_worker|" -e "s|@LIGHTTPD_USER@|$LIGHTTPD_USER_LINES|"
    cp "$HERE/s3-redirect.lua" "$d/lighttpd/s3-redirect.lua"
    chmod -R a+rX "$d"
    cp "$d/spillway.yaml" "$RAW_DIR/spillway-w$n.yaml"
    cp "$d/nginx/nginx.conf" "$RAW_DIR/nginx-w$n.conf"
    cp "$d/lighttpd/lighttpd.conf" "$RAW_DIR/lighttpd-w$n.conf"
    cp "$d/lighttpd/s3-redirect.lua" "$RAW_DIR/s3-redirect.lua"

    "$SPILLWAY_BIN" check --config "$d/spillway.yaml" >"$RAW_DIR/spillway-check-w$n.log" 2>&1 ||
        die "spillway check rejected the generated config ($RAW_DIR/spillway-w$n.yaml):
$(cat "$RAW_DIR/spillway-check-w$n.log")"
    "$NGINX_BIN" -t -q -e "$d/nginx/startup-error.log" -p "$d/nginx" -c "$d/nginx/nginx.conf" \
        >"$RAW_DIR/nginx-check-w$n.log" 2>&1 || die "nginx -t rejected the generated config ($RAW_DIR/nginx-w$n.conf):
$(cat "$RAW_DIR/nginx-check-w$n.log")"
    # -tt: also loads the modules (mod_magnet, mod_proxy)
    "$LIGHTTPD_BIN" -tt -f "$d/lighttpd/lighttpd.conf" >"$RAW_DIR/lighttpd-check-w$n.log" 2>&1 ||
        die "lighttpd -tt rejected the generated config ($RAW_DIR/lighttpd-w$n.conf):
$(cat "$RAW_DIR/lighttpd-check-w$n.log")"

    log "starting spillway on 127.0.0.1:$SPILLWAY_PORT (threads: $n, access_log off, RUST_LOG=warn)"
    RUST_LOG=warn "$SPILLWAY_BIN" run --config "$d/spillway.yaml" >"$RAW_DIR/spillway-w$n.log" 2>&1 &
    PID[spillway]=$!
    track "${PID[spillway]}" INT spillway # spillway: SIGINT = stop at once
    wait_port "$SPILLWAY_PORT" "${PID[spillway]}" spillway "$RAW_DIR/spillway-w$n.log"

    log "starting nginx on 127.0.0.1:$NGINX_PORT (worker_processes $n, access_log off, open_file_cache)"
    start_nginx "$d/nginx" nginx "$NGINX_PORT" "nginx-w$n"
    PID[nginx]=$STARTED_PID

    local lw="one process"
    ((n > 1)) && lw="server.max-worker = $n"
    log "starting lighttpd on 127.0.0.1:$LIGHTTPD_PORT ($lw, mod_magnet, no access log)"
    "$LIGHTTPD_BIN" -D -f "$d/lighttpd/lighttpd.conf" >"$RAW_DIR/lighttpd-w$n.log" 2>&1 &
    PID[lighttpd]=$!
    track "${PID[lighttpd]}" TERM lighttpd # lighttpd: TERM = stop at once (INT would be graceful)
    wait_port "$LIGHTTPD_PORT" "${PID[lighttpd]}" lighttpd "$RAW_DIR/lighttpd-w$n.log"
    if ((n > 1)); then # the workers are forked after the parent has bound the port
        local i
        for ((i = 0; i < 100; i++)); do
            (($(pgrep -c -P "${PID[lighttpd]}" || true) >= n)) && break
            sleep 0.1
        done
        (($(pgrep -c -P "${PID[lighttpd]}" || true) >= n)) || die "lighttpd did not start $n workers within 10 s"
    fi
}

stop_servers() { # workers: stops the three, keeps their error logs
    local s pid sig
    for s in lighttpd nginx spillway; do
        pid=${PID[$s]}
        sig=TERM
        [[ $s == spillway ]] && sig=INT
        stop_pid "$pid" "$sig"
        untrack "$pid"
        wait_port_closed "${PORT[$s]}" "$s"
    done
    cp "$WORK/w$1/nginx/error.log" "$RAW_DIR/nginx-error-w$1.log" 2>/dev/null || true
}

alive() { # server
    kill -0 "${PID[$1]}" 2>/dev/null || die "$1 is no longer running (logs: $RAW_DIR)"
}

# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
proc_kib() { # pid field -> KiB (0 if gone)
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}
# a server's processes: nginx master + workers, lighttpd + its workers (if any), spillway alone
# shellcheck disable=SC2046 # one pid per word
server_pids() { echo "${PID[$1]}" $(pgrep -P "${PID[$1]}" || true); }
# summed over the server's processes (RSS counts shared pages in every process)
server_kib() { # server field
    local total=0 p
    for p in $(server_pids "$1"); do total=$((total + $(proc_kib "$p" "$2"))); done
    echo "$total"
}
# resets VmHWM to the current RSS (Linux >= 4.0), so that a later peak is that phase's own
reset_peak() { # server -> 0 if every process took it
    local p ok=0
    for p in $(server_pids "$1"); do
        { printf 5 >"/proc/$p/clear_refs"; } 2>/dev/null || ok=1
    done
    return "$ok"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }
# VmRSS once two readings 0.2 s apart agree within 64 KiB (at most 5 s): allocators give memory
# back a little after it was freed, and a baseline taken during that would skew a difference
settled_kib() { # server
    local prev cur i
    prev=$(server_kib "$1" VmRSS)
    cur=$prev
    for ((i = 0; i < 25; i++)); do
        sleep 0.2
        cur=$(server_kib "$1" VmRSS)
        ((cur - prev <= 64 && prev - cur <= 64)) && break
        prev=$cur
    done
    echo "$cur"
}

stream_big() { # server -> MiB downloaded
    local s=$1 out rc=0 code bytes
    out=$RAW_DIR/stream-w$W-$s.txt
    run_tracked "$out" curl -s -o /dev/null --limit-rate "$MEM_RATE" --max-time "$MEM_SECONDS" \
        -w '%{http_code} %{size_download}\n' "http://127.0.0.1:${PORT[$s]}/uploads/1g.bin" || rc=$?
    # 28 = --max-time reached: expected, the file is bigger than rate x time
    ((rc == 0 || rc == 28)) || die "streaming the 1 GiB file from $s failed (curl exit $rc)"
    read -r code bytes <"$out"
    [[ $code == 200 ]] || die "streaming the 1 GiB file from $s: status $code, expected 200"
    awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }'
}

# Client sockets towards the server's port that the server has not closed yet (ESTABLISHED, or
# CLOSE-WAIT: the client closed, the server has not).
server_conns() { # port
    ss -Htn state established state close-wait "( sport = :$1 )" | wc -l
}
wait_no_conns() { # server: until the server has closed every connection on its port (at most 30 s)
    local i n
    for ((i = 0; i < 300; i++)); do
        n=$(server_conns "${PORT[$1]}")
        ((n == 0)) && return 0
        sleep 0.1
    done
    die "$1 still had $n connection(s) open 30 s after their clients closed them"
}

# The connection-memory test: RSS idle, with CONN_MEM_N idle keep-alive connections open (each
# has had one GET /uploads/1k.bin answered in full), and after they are closed and the server has
# closed its side of every one.
declare -A CM_IDLE CM_OPEN CM_AFTER CM_SEEN
conn_mem() { # server
    local s=$1 port=${PORT[$1]} fifo out pypid i rc=0 still
    fifo=$WORK/idle-$s.fifo
    out=$RAW_DIR/connmem-w$W-$s.txt
    rm -f "$fifo"
    mkfifo "$fifo"
    alive "$s"
    wait_no_conns "$s" # the previous test's connection included
    CM_IDLE[$W,$s]=$(settled_kib "$s")
    python3 "$HERE/idle_connections.py" 127.0.0.1 "$port" "$CONN_MEM_N" /uploads/1k.bin 1024 <"$fifo" >"$out" 2>&1 &
    pypid=$!
    track "$pypid" TERM idle_connections.py
    exec 8>"$fifo" # its stdin: a line (or end-of-file if this script dies) makes it close them all
    for ((i = 0; i < 1300; i++)); do
        grep -q '^READY ' "$out" && break
        kill -0 "$pypid" 2>/dev/null || break
        sleep 0.1
    done
    if ! grep -q '^READY ' "$out"; then
        exec 8>&-
        wait "$pypid" || rc=$?
        untrack "$pypid"
        die "idle-connection test against $s failed (exit $rc):
$(tail -n 5 "$out")"
    fi
    CM_SEEN[$W,$s]=$(server_conns "$port")
    CM_OPEN[$W,$s]=$(settled_kib "$s")
    printf '\n' >&8
    exec 8>&-
    wait "$pypid" || rc=$?
    untrack "$pypid"
    ((rc == 0)) || die "idle-connection test against $s failed while closing (exit $rc):
$(tail -n 5 "$out")"
    still=$(awk '$1 == "STILL_OPEN" { print $2 }' "$out")
    [[ $still == "$CONN_MEM_N" ]] || die "$s closed $((CONN_MEM_N - ${still:-0})) of the $CONN_MEM_N idle connections during the test"
    ((CM_SEEN[$W,$s] >= CONN_MEM_N)) ||
        die "ss saw only ${CM_SEEN[$W,$s]} established connections on $s's port while $CONN_MEM_N were open"
    wait_no_conns "$s"
    CM_AFTER[$W,$s]=$(settled_kib "$s")
    alive "$s"
    rm -f "$fifo"
    log "  $s: idle $(mib "${CM_IDLE[$W,$s]}"), with $CONN_MEM_N open $(mib "${CM_OPEN[$W,$s]}"), after close $(mib "${CM_AFTER[$W,$s]}")"
}

# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
WORKLOADS=(a b c d e f g)
declare -A NAME SPEC EXP_BODY
NAME[a]="(a) 1 KiB file hit"
NAME[b]="(b) 1 MiB file hit"
NAME[c]="(c) miss -> public 302"
NAME[d]="(d) miss -> private 302 (peers: unsigned)"
NAME[e]="(e) proxied to keep-alive backend"
NAME[f]="(f) conditional GET -> 304"
NAME[g]="(g) browser mix (1 page, 6 assets, 2 x 302, 1 x 304)"
# "path kind": file = 200 with the file's bytes; s3 = 302 to the object's URL; s3priv = the same,
# presigned by spillway; legacy = the backend's page with X-Forwarded-For seen; 304 = If-None-Match
SPEC[a]="/uploads/1k.bin file"
SPEC[b]="/uploads/1m.bin file"
SPEC[c]="/uploads/public/missing.png s3"
SPEC[d]="/uploads/private/missing.pdf s3priv"
SPEC[e]="/legacy/page.html legacy"
SPEC[f]="/uploads/1k.bin 304"
SPEC[g]="/ mix" # wrk's URL; browser.lua sends the paths of MIX
# (g): per 10 requests, what a browser fetches for a page of the legacy app
MIX=(
    "/legacy/page.html legacy"
    "/uploads/assets/site.css file"
    "/uploads/assets/app.js file"
    "/uploads/assets/hero.png file"
    "/uploads/public/avatars/17.jpg s3"
    "/uploads/assets/logo.png file"
    "/uploads/assets/vendor.js file"
    "/uploads/public/avatars/42.jpg s3"
    "/uploads/assets/site.css 304"
    "/uploads/assets/print.css file"
)
S3_BASE="http://127.0.0.1:9000/example-media"

body_size() { # path kind -> the body a correct answer has, in bytes (302 bodies vary: 0)
    case $2 in
    file) stat -c %s "$DOCROOT$1" ;;
    legacy) echo "$LEGACY_SIZE" ;;
    *) echo 0 ;;
    esac
}
# The mean body bytes per response of a correct run (wrk's bytes / requests must be at least
# this), and the largest body (wrk also counts the bytes of the responses still in flight when it
# stops: at most one per connection).
declare -A MAX_BODY
for w in "${WORKLOADS[@]}"; do
    if [[ $w == g ]]; then
        total=0 largest=0
        for m in "${MIX[@]}"; do
            # shellcheck disable=SC2086 # "path kind": two words
            size=$(body_size $m)
            total=$((total + size))
            ((size > largest)) && largest=$size
        done
        EXP_BODY[$w]=$((total / ${#MIX[@]}))
        MAX_BODY[$w]=$largest
    else
        # shellcheck disable=SC2086
        EXP_BODY[$w]=$(body_size ${SPEC[$w]})
        MAX_BODY[$w]=${EXP_BODY[$w]}
    fi
done

# ETags differ between servers: each server's own, per path (fetched after each start).
declare -A ETAG
fetch_etag() { # server path
    local e
    e=$(curl -s -o /dev/null -D - --max-time 10 "http://127.0.0.1:${PORT[$1]}$2" |
        awk 'tolower($1) == "etag:" { sub(/\r$/, ""); sub(/^[^:]*: */, ""); print }')
    [[ -n $e ]] || die "$1 sent no ETag for $2"
    ETAG[$1,$2]=$e
}

# curl check of one answer: the expected status and the expected kind of answer.
check_url() { # server path kind workload
    local s=$1 path=$2 kind=$3 w=$4 url hdrs body code size loc xff fail=""
    url="http://127.0.0.1:${PORT[$s]}$path"
    hdrs=$WORK/check.h
    body=$WORK/check.b
    local -a h=()
    [[ $kind == 304 ]] && h=(-H "If-None-Match: ${ETAG[$s,$path]}")
    read -r code size < <(curl -s -o "$body" -D "$hdrs" -w '%{http_code} %{size_download}\n' \
        --max-time 10 "${h[@]}" "$url" || echo "000 0")
    loc=$(awk 'tolower($1) == "location:" { sub(/\r$/, ""); sub(/^[^:]*: */, ""); print }' "$hdrs")
    xff=$(awk 'tolower($1) == "x-backend-saw-xff:" { sub(/\r$/, ""); sub(/^[^:]*: */, ""); print }' "$hdrs")
    case $kind in
    file)
        local want saved
        want=$(stat -c %s "$DOCROOT$path")
        if ! [[ $code == 200 && $size == "$want" ]]; then
            fail="expected 200 with the file's $want bytes"
        elif ! cmp -s "$body" "$DOCROOT$path"; then
            saved=$RAW_DIR/check-failed-w$W-$s-$(basename "$path")
            cp "$body" "$saved"
            fail="expected 200 with the file's $want bytes; the size is right but $(cmp -l "$body" "$DOCROOT$path" | wc -l || true) bytes differ, the first: $(cmp "$body" "$DOCROOT$path" | sed 's/^.*: //' || true) (body saved: $saved, the file: $saved.expected)"
            cp "$DOCROOT$path" "$saved.expected"
        fi
        ;;
    s3)
        [[ $code == 302 && $loc == "$S3_BASE$path" ]] || fail="expected 302 to $S3_BASE$path"
        ;;
    s3priv)
        if [[ $s == spillway ]]; then
            [[ $code == 302 && $loc == "$S3_BASE$path?"*X-Amz-Signature=* ]] ||
                fail="expected 302 to a presigned $S3_BASE$path?...X-Amz-Signature=..."
        else
            [[ $code == 302 && $loc == "$S3_BASE$path" ]] || fail="expected 302 to $S3_BASE$path"
        fi
        ;;
    legacy)
        [[ $code == 200 ]] && grep -q "$LEGACY_MARKER" "$body" && [[ $xff == 127.0.0.1 ]] ||
            fail="expected 200 with the backend's page (containing '$LEGACY_MARKER'), the backend having seen X-Forwarded-For: 127.0.0.1"
        ;;
    304)
        [[ $code == 304 && $size == 0 ]] || fail="expected 304 for If-None-Match: ${ETAG[$s,$path]}"
        ;;
    esac
    if [[ -n $fail ]]; then
        die "check failed before workload ${NAME[$w]}: $s GET $path${h[*]:+ (${h[1]})}: $fail;
got status $code, $size body bytes${loc:+, Location: $loc}. Response headers:
$(tr -d '\r' <"$hdrs")
(server logs: $RAW_DIR)"
    fi
}

check() { # workload server
    local w=$1 s=$2 m
    alive "$s"
    if [[ $w == g ]]; then
        for m in "${MIX[@]}"; do
            # shellcheck disable=SC2086
            check_url "$s" $m "$w"
        done
    else
        # shellcheck disable=SC2086
        check_url "$s" ${SPEC[$w]} "$w"
    fi
}

# One wrk run; appends its numbers to the RES_* arrays unless it is a warm-up.
declare -A RES_RPS RES_P99 RES_MIBS RES_NON RES_SOCK
run_wrk() { # workload server round|warmup duration
    local w=$1 s=$2 r=$3 d=$4 out stat path kind m
    out=$RAW_DIR/wrk-w$W-$w-$s-$r.txt
    read -r path kind <<<"${SPEC[$w]}"
    local -a args=(-s "$HERE/report.lua")
    if [[ $w == g ]]; then
        args=(-s "$HERE/browser.lua" "http://127.0.0.1:${PORT[$s]}$path" --)
        for m in "${MIX[@]}"; do
            read -r path kind <<<"$m"
            if [[ $kind == 304 ]]; then args+=("$path|${ETAG[$s,$path]}"); else args+=("$path"); fi
        done
    else
        [[ $kind == 304 ]] && args+=(-H "If-None-Match: ${ETAG[$s,$path]}")
        args+=("http://127.0.0.1:${PORT[$s]}$path")
    fi
    run_tracked "$out" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$d" --latency "${args[@]}" ||
        die "wrk failed ($s, ${NAME[$w]}):
$(tail -n 20 "$out")"
    [[ $r == warmup ]] && return 0
    stat=$(grep '^WRKSTAT ' "$out" | tail -n 1) || die "no WRKSTAT line in $out"
    # requests duration_us bytes p50 p99 max connect read write timeout status
    local -a v
    read -r -a v < <(sed -e 's/^WRKSTAT //' -e 's/[a-z0-9_]*=//g' <<<"$stat")
    ((v[0] > 0)) || die "wrk completed no request ($s, ${NAME[$w]}): $out"
    local rps p99 mibs sock bpr hi
    rps=$(awk -v n="${v[0]}" -v us="${v[1]}" 'BEGIN { printf "%.1f", n / (us / 1e6) }')
    mibs=$(awk -v b="${v[2]}" -v us="${v[1]}" 'BEGIN { printf "%.1f", b / 1048576 / (us / 1e6) }')
    bpr=$(awk -v b="${v[2]}" -v n="${v[0]}" 'BEGIN { printf "%.0f", b / n }')
    p99=${v[4]}
    sock=$((v[6] + v[7] + v[8] + v[9]))
    # Under load too, the answers must be the checked ones: bytes read per response are at least
    # the expected body, and at most that plus headers (a 302's body too) and the partial
    # responses wrk stopped in.
    hi=$(awk -v b="${EXP_BODY[$w]}" -v m="${MAX_BODY[$w]}" -v c="$CONNECTIONS" -v n="${v[0]}" -v w="$w" \
        'BEGIN { printf "%.0f", b + c * m / n + (w == "c" || w == "d" ? 2048 : 1024) }')
    ((bpr >= EXP_BODY[$w] && bpr <= hi)) ||
        die "$s, ${NAME[$w]}: wrk read $bpr bytes per response; correct answers have ${EXP_BODY[$w]} to $hi (raw: $out)"
    RES_RPS[$W,$w,$s]+="$rps "
    RES_P99[$W,$w,$s]+="$p99 "
    RES_MIBS[$W,$w,$s]+="$mibs "
    RES_NON[$W,$w,$s]=$((${RES_NON[$W,$w,$s]:-0} + v[10]))
    RES_SOCK[$W,$w,$s]=$((${RES_SOCK[$W,$w,$s]:-0} + sock))
    printf '[load]   %-8s %-52s %10s req/s  p99 %8s us  %s B/resp  non-2xx/3xx %s  socket errors %s (c%s r%s w%s t%s)\n' \
        "$s" "${NAME[$w]}" "$rps" "$p99" "$bpr" "${v[10]}" "$sock" "${v[6]}" "${v[7]}" "${v[8]}" "${v[9]}" >&2
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# ---------------------------------------------------------------------------------------------
# The runs, one set per worker count
# ---------------------------------------------------------------------------------------------
declare -A MEM_IDLE MEM_PEAK MEM_STREAMED LOAD_PEAK
PEAK_RESET_OK=1
for W in "${WORKER_COUNTS[@]}"; do
    log "=== $W worker(s) each"
    start_servers "$W"
    sleep 1
    for s in "${SERVERS[@]}"; do MEM_IDLE[$W,$s]=$(settled_kib "$s"); done

    log "memory: streaming the 1 GiB file to curl --limit-rate $MEM_RATE for ${MEM_SECONDS}s, each server"
    for s in "${SERVERS[@]}"; do
        MEM_STREAMED[$W,$s]=$(stream_big "$s")
        MEM_PEAK[$W,$s]=$(server_kib "$s" VmHWM)
        alive "$s"
    done

    if ((CONN_MEM_N > 0)); then
        log "memory: $CONN_MEM_N idle keep-alive connections, each server"
        for s in "${SERVERS[@]}"; do conn_mem "$s"; done
    fi

    for s in "${SERVERS[@]}"; do
        fetch_etag "$s" /uploads/1k.bin
        fetch_etag "$s" /uploads/assets/site.css
        reset_peak "$s" || PEAK_RESET_OK=0
    done

    if [[ $WARMUP != 0 && $WARMUP != 0[smh] ]]; then
        log "warm-up: $WARMUP per workload and server (not measured)"
        for w in "${WORKLOADS[@]}"; do
            for s in "${SERVERS[@]}"; do
                check "$w" "$s"
                run_wrk "$w" "$s" warmup "$WARMUP"
            done
        done
    fi

    for ((r = 1; r <= ROUNDS; r++)); do
        # rotate which server goes first, so drift within a round evens out over the rounds
        k=$(((r - 1) % 3))
        order=("${SERVERS[@]:k}" "${SERVERS[@]:0:k}")
        log "round $r/$ROUNDS ($W worker(s)): wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, order: ${order[*]}"
        for w in "${WORKLOADS[@]}"; do
            for s in "${order[@]}"; do
                check "$w" "$s"
                run_wrk "$w" "$s" "$r" "$DURATION"
            done
        done
    done

    for s in "${SERVERS[@]}"; do
        alive "$s"
        LOAD_PEAK[$W,$s]=$(server_kib "$s" VmHWM)
    done
    stop_servers "$W"
done

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
fmt_int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt_ms() { awk -v us="$1" 'BEGIN { if (us < 1000) printf "%.0f us", us; else printf "%.2f ms", us / 1000 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b ? a / b : 0 }'; }
kib_delta() { # from to [per] -> "x.x MiB" or, with per, "x.x KiB"
    if [[ -n ${3:-} ]]; then
        awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN { printf "%.1f KiB", (b - a) / n }'
    else
        mib $(($2 - $1))
    fi
}
workers_line() { # workers
    local lw="one process (\`server.max-worker\` not set)"
    (($1 > 1)) && lw="\`server.max-worker = $1\` (a parent and $1 workers)"
    # shellcheck disable=SC2016 # markdown backticks
    printf 'spillway `threads: %s`, nginx `worker_processes %s`, lighttpd %s' "$1" "$1" "$lw"
}

ERRORS_SEEN=""
SECTIONS=""
for W in "${WORKER_COUNTS[@]}"; do
    wl=worker
    ((W > 1)) && wl=workers
    TABLE="| workload | spillway req/s | nginx req/s | lighttpd req/s | spillway/nginx | spillway/lighttpd | p99 spillway / nginx / lighttpd | errors (s / n / l) |
|---|---:|---:|---:|---:|---:|---:|---:|"
    for w in "${WORKLOADS[@]}"; do
        declare -A med=() p99=() cell=() errs=()
        for s in "${SERVERS[@]}"; do
            # shellcheck disable=SC2086
            med[$s]=$(median ${RES_RPS[$W,$w,$s]})
            # shellcheck disable=SC2086
            p99[$s]=$(fmt_ms "$(median ${RES_P99[$W,$w,$s]})")
            cell[$s]=$(fmt_int "${med[$s]}")
            if [[ $w == b ]]; then
                # shellcheck disable=SC2086
                cell[$s]+=" ($(fmt_int "$(median ${RES_MIBS[$W,$w,$s]})") MiB/s)"
            fi
            errs[$s]=$((${RES_NON[$W,$w,$s]} + ${RES_SOCK[$W,$w,$s]}))
            if ((errs[$s] > 0)); then
                ERRORS_SEEN+="- $W $wl, $s, ${NAME[$w]}: ${RES_NON[$W,$w,$s]} responses with status >= 400, ${RES_SOCK[$W,$w,$s]} socket errors (all rounds; raw: $RAW_DIR/wrk-w$W-$w-$s-*.txt)
"
            fi
        done
        TABLE+="
| ${NAME[$w]} | ${cell[spillway]} | ${cell[nginx]} | ${cell[lighttpd]} | $(ratio "${med[spillway]}" "${med[nginx]}") | $(ratio "${med[spillway]}" "${med[lighttpd]}") | ${p99[spillway]} / ${p99[nginx]} / ${p99[lighttpd]} | ${errs[spillway]} / ${errs[nginx]} / ${errs[lighttpd]} |"
        unset med p99 cell errs
    done

    peak_head="peak during the wrk runs"
    ((PEAK_RESET_OK)) || peak_head="peak since startup (VmHWM could not be reset)"
    MEMT="| | idle after startup | peak while streaming 1 GiB to \`curl --limit-rate $MEM_RATE\` for ${MEM_SECONDS}s | peak - idle | streamed | $peak_head |
|---|---:|---:|---:|---:|---:|"
    for s in "${SERVERS[@]}"; do
        MEMT+="
| $s | $(mib "${MEM_IDLE[$W,$s]}") | $(mib "${MEM_PEAK[$W,$s]}") | $(kib_delta "${MEM_IDLE[$W,$s]}" "${MEM_PEAK[$W,$s]}") | ${MEM_STREAMED[$W,$s]} MiB | $(mib "${LOAD_PEAK[$W,$s]}") |"
    done

    CONNT=""
    if ((CONN_MEM_N > 0)); then
        CONNT="
$CONN_MEM_N idle keep-alive connections (each sent one \`GET /uploads/1k.bin\` and read the whole answer, then stayed open; measured once all were answered, and again once the server had closed its side of every one, as \`ss\` shows):

| | RSS idle | RSS with $CONN_MEM_N open | growth per connection | RSS after close | after close - idle |
|---|---:|---:|---:|---:|---:|"
        for s in "${SERVERS[@]}"; do
            CONNT+="
| $s | $(mib "${CM_IDLE[$W,$s]}") | $(mib "${CM_OPEN[$W,$s]}") | $(kib_delta "${CM_IDLE[$W,$s]}" "${CM_OPEN[$W,$s]}" "$CONN_MEM_N") | $(mib "${CM_AFTER[$W,$s]}") | $(kib_delta "${CM_IDLE[$W,$s]}" "${CM_AFTER[$W,$s]}") |"
        done
        CONNT+="
"
    fi

    SECTIONS+="
## $W $wl each

$(workers_line "$W").

$TABLE

Memory (VmRSS / VmHWM from /proc, summed over a server's processes: nginx master + workers, lighttpd with its workers, spillway one process):

$MEMT
$CONNT"
done

NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
LIGHTTPD_VERSION=$("$LIGHTTPD_BIN" -v 2>&1 | awk 'NR == 1 { print $1 }')
MAGNET_PKG=$(dpkg-query -W -f '${Package} ${Version}' lighttpd-modules-lua 2>/dev/null || true)
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')
SPILLWAY_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then SPILLWAY_REV+=" + uncommitted changes"; fi
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
ELAPSED=$(($(date +%s) - START_TIME))
COMMAND="WORKERS=\"$WORKERS\" DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS WRK_THREADS=$WRK_THREADS WARMUP=$WARMUP MEM_SECONDS=$MEM_SECONDS MEM_RATE=$MEM_RATE CONN_MEM_N=$CONN_MEM_N NGINX_SENDFILE=$NGINX_SENDFILE BACKEND_WORKERS=$BACKEND_WORKERS bash benches/load/run.sh"
MIX_LINE=""
for m in "${MIX[@]}"; do
    read -r path kind <<<"$m"
    case $kind in
    file) MIX_LINE+="\`$path\` ($(fmt_int "$(stat -c %s "$DOCROOT$path")") B), " ;;
    s3) MIX_LINE+="\`$path\` (302), " ;;
    legacy) MIX_LINE+="\`$path\` (proxied), " ;;
    304) MIX_LINE+="\`$path\` with If-None-Match (304), " ;;
    esac
done

REPORT="# spillway vs nginx vs lighttpd: load benchmark

$(date -u '+%Y-%m-%d %H:%M:%S UTC') -- \`$COMMAND\`

- machine: $(nproc) CPUs ($CPU_MODEL), kernel $(uname -r), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); before the servers started: load average $LOADAVG_START, CPU idle $CPU_IDLE_START% (other work on the machine skews every column)
- versions: spillway $SPILLWAY_REV (release build), $NGINX_VERSION, $LIGHTTPD_VERSION (${MAGNET_PKG:-mod_magnet}), $WRK_VERSION; all on 127.0.0.1, one document root
- spillway: \`threads: N\`, \`access_log: format: off\`, \`RUST_LOG=warn\`, keep-alive upstream pool (\`idle_timeout: 60s\`); presigns private misses (d)
- nginx (tuned): \`worker_processes N\`, \`worker_rlimit_nofile $NOFILE\`, \`sendfile $NGINX_SENDFILE\`, \`tcp_nopush $NGINX_SENDFILE\`, \`open_file_cache max=10000 inactive=60s\`, \`open_file_cache_valid 60s\`, \`open_file_cache_min_uses 1\`, \`open_file_cache_errors on\` (misses cached too), \`etag on\`, \`access_log off\`, \`keepalive_requests 1000000\`, \`try_files \$uri @s3\` -> \`return 302\`, upstream \`keepalive 64\` with \`proxy_http_version 1.1\`; cannot presign: (d) is an unsigned 302
- lighttpd: mod_magnet script for \`/uploads/\` at \`magnet.attract-physical-path-to\` (\`lighty.c.stat(physical.path)\`: a file is left to mod_staticfile with its ETag and 304s, anything else is answered 302), \`server.max-worker\` not set at 1 worker (lighttpd's recommendation) and N above, \`server.stat-cache-engine = \"simple\"\` (misses not cached), \`server.network-backend = \"sendfile\"\`, no mod_accesslog, \`server.max-keep-alive-requests = 65535\` (the most: a 16-bit option), \`server.max-keep-alive-idle = 65\`, \`server.max-fds = $LIGHTTPD_MAX_FDS\` (the open file limit here, at most 65535), \`static-file.etags\` and \`etag.use-inode/mtime/size\` enabled; mod_proxy for everything else (adds X-Forwarded-For; lighttpd 1.4 has no upstream keep-alive: one backend connection per request, \`Connection: close\`); cannot presign: (d) is an unsigned 302
- backend: a separate nginx ($BACKEND_WORKERS worker) serving a ${LEGACY_SIZE}-byte static page for every path, keep-alive, echoing the X-Forwarded-For it saw
- wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, keep-alive; $ROUNDS round(s), the three servers in turn with the first one rotating every round, warm-up $WARMUP; medians of the rounds; wrk runs on the same $(nproc) CPUs as the servers
- (g) cycles on each connection through: ${MIX_LINE%, } (\`benches/load/browser.lua\`)
- before every wrk run each server's answer to every URL of the workload is checked with curl (status; body size and bytes, Location, backend page and X-Forwarded-For, as fits), and after it wrk's bytes per response must fit the expected answers
$SECTIONS"
if [[ -n $ERRORS_SEEN ]]; then
    REPORT+="
Errors reported by wrk (responses with status >= 400, and connect/read/write/timeout errors):
$ERRORS_SEEN"
else
    REPORT+="
wrk reported no responses with status >= 400 and no socket errors.
"
fi
SP_WARNINGS=$(cat "$RAW_DIR"/spillway-w*.log | grep -c . || true)
if ((SP_WARNINGS > 0)); then
    # tracing's lines start with a timestamp; group the rest (first 200 characters)
    REPORT+="
spillway wrote $SP_WARNINGS line(s) to stdout/stderr with RUST_LOG=warn ($RAW_DIR/spillway-w*.log), most frequent first
(wrk stops each run with requests in flight, and the memory test's curl stops mid-body):

\`\`\`
$(cat "$RAW_DIR"/spillway-w*.log | sed -E 's/^[0-9]{4}-[0-9-]+T[0-9:.]+Z +//' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8)
\`\`\`
"
fi
# lighttpd's error log, less its start and stop lines
LT_LINES=$(cat "$RAW_DIR"/lighttpd-w*.log 2>/dev/null | grep -v -E 'server started|server stopped|server (graceful )?shutdown' | grep -c . || true)
if ((LT_LINES > 0)); then
    REPORT+="
lighttpd logged $LT_LINES line(s) besides starting and stopping ($RAW_DIR/lighttpd-w*.log), most frequent first:

\`\`\`
$(cat "$RAW_DIR"/lighttpd-w*.log | grep -v -E 'server started|server stopped|server (graceful )?shutdown' | sed -E 's/^[0-9]{4}-[0-9-]+ [0-9:]+: +//' | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8)
\`\`\`
"
fi
REPORT+="
Total run time: ${ELAPSED}s (including build and setup).
"

printf '\n%s\n' "$REPORT"
mkdir -p "$OUT_DIR"
printf '%s' "$REPORT" >"$OUT_DIR/results.md"
log "written: $OUT_DIR/results.md (raw wrk output, configs and logs: $RAW_DIR)"
exit 0
}
