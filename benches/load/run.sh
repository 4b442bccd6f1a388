#!/usr/bin/env bash
# Side-by-side load benchmark: spillway vs nginx doing the same job on the same machine.
#
#   bash benches/load/run.sh                         # from the repo root; ~5 minutes on 2 cores
#   DURATION=3s ROUNDS=1 bash benches/load/run.sh    # quick smoke run
#
# What it does: builds spillway (cargo build --release), installs Debian's nginx-light and wrk
# with apt-get when missing, generates one document root in a temp dir, starts three servers on
# 127.0.0.1 only -- spillway, nginx configured as the same redirect-or-serve proxy, and a second
# nginx as the keep-alive "legacy" backend both proxy to -- checks each workload with curl, runs
# wrk against spillway and nginx alternately ROUNDS times, and prints medians. It also measures
# resident memory while a rate-limited client streams a 1 GiB file. Every process it starts is
# stopped on exit (trap), also on failure or Ctrl-C. Results: stdout and target/load/results.md;
# raw wrk output and server logs: target/load/raw/.
#
# Tuning (environment):
#   DURATION=7s        wrk duration of each measured run
#   CONNECTIONS=64     wrk connections (keep-alive)
#   ROUNDS=3           alternating spillway/nginx rounds; medians are reported
#   THREADS=2          server workers: spillway `threads:` = nginx `worker_processes`
#   WRK_THREADS=$THREADS  wrk threads (wrk shares the machine's cores with the servers)
#   WARMUP=1s          unmeasured wrk run per workload and server before round 1 (0 = none)
#   BACKEND_WORKERS=1  worker_processes of the legacy backend nginx
#   MEM_SECONDS=8      how long the slow reader streams the 1 GiB file
#   MEM_RATE=50M       its curl --limit-rate
#   NGINX_SENDFILE=on  nginx `sendfile` (Debian's default; spillway uses sendfile for cached ranges of 128 KiB and up)
#   SPILLWAY_PORT=18080 NGINX_PORT=18081 BACKEND_PORT=18082
#   SKIP_BUILD=1       use the existing target/release/spillway
#   SKIP_INSTALL=1     never call apt-get (fail if nginx or wrk is missing)

# The whole script is one brace group: bash parses it completely before running it, so editing
# this file during a run cannot change the run.
{
set -Eeuo pipefail

DURATION=${DURATION:-7s}
CONNECTIONS=${CONNECTIONS:-64}
ROUNDS=${ROUNDS:-3}
THREADS=${THREADS:-2}
WRK_THREADS=${WRK_THREADS:-$THREADS}
WARMUP=${WARMUP:-1s}
BACKEND_WORKERS=${BACKEND_WORKERS:-1}
MEM_SECONDS=${MEM_SECONDS:-8}
MEM_RATE=${MEM_RATE:-50M}
NGINX_SENDFILE=${NGINX_SENDFILE:-on}
SPILLWAY_PORT=${SPILLWAY_PORT:-18080}
NGINX_PORT=${NGINX_PORT:-18081}
BACKEND_PORT=${BACKEND_PORT:-18082}
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
is_uint "$THREADS" && ((THREADS >= 1)) || die "THREADS must be a positive integer (got '$THREADS')"
is_uint "$WRK_THREADS" && ((WRK_THREADS >= 1)) || die "WRK_THREADS must be a positive integer (got '$WRK_THREADS')"
is_uint "$BACKEND_WORKERS" && ((BACKEND_WORKERS >= 1)) || die "BACKEND_WORKERS must be a positive integer"
is_uint "$MEM_SECONDS" && ((MEM_SECONDS >= 1)) || die "MEM_SECONDS must be a positive integer (seconds)"
((WRK_THREADS <= CONNECTIONS)) || die "WRK_THREADS ($WRK_THREADS) must not exceed CONNECTIONS ($CONNECTIONS)"
[[ $DURATION =~ ^[0-9]+[smh]?$ ]] || die "DURATION must look like 10s, 2m (got '$DURATION')"
[[ $WARMUP =~ ^[0-9]+[smh]?$ ]] || die "WARMUP must look like 1s or 0 (got '$WARMUP')"
[[ $NGINX_SENDFILE == on || $NGINX_SENDFILE == off ]] || die "NGINX_SENDFILE must be on or off"
for p in "$SPILLWAY_PORT" "$NGINX_PORT" "$BACKEND_PORT"; do
    is_uint "$p" && ((p > 0 && p < 65536)) || die "bad port '$p'"
done

# ---------------------------------------------------------------------------------------------
# Cleanup: every process this script starts is in PIDS and is stopped on exit, whatever happens.
# ---------------------------------------------------------------------------------------------
PIDS=()
WORK=""
POLICY_RC_CREATED=0

stop_pid() { # pid signal
    local pid=$1 sig=$2 children i
    kill -0 "$pid" 2>/dev/null || return 0
    # nginx masters: remember their workers, which are not killed with the master on SIGKILL
    children=$(pgrep -P "$pid" 2>/dev/null || true)
    kill "-$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid did not stop on SIG$sig; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        # its children (nginx workers) survive a SIGKILLed master
        for c in $children; do
            kill -KILL "$c" 2>/dev/null || true
        done
    fi
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM ERR
    set +e
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
NGINX_BIN=$(command -v nginx || true)
[[ -z $NGINX_BIN && -x /usr/sbin/nginx ]] && NGINX_BIN=/usr/sbin/nginx
missing=()
[[ -n $NGINX_BIN ]] || missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
    ((SKIP_INSTALL == 0)) || die "missing: ${missing[*]} (SKIP_INSTALL=1)"
    SUDO=()
    if ((EUID != 0)); then
        command -v sudo >/dev/null || die "missing: ${missing[*]}; run as root or install them"
        SUDO=(sudo)
    fi
    # Keep apt from starting a system-wide nginx service (port 80, all addresses).
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
    NGINX_BIN=$(command -v nginx || echo /usr/sbin/nginx)
fi
[[ -x $NGINX_BIN ]] || die "nginx not found after install"
[[ -r /etc/nginx/mime.types ]] || die "/etc/nginx/mime.types missing (package nginx-common)"

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
# Document root, configs
# ---------------------------------------------------------------------------------------------
mkdir -p "$RAW_DIR"
rm -f "$RAW_DIR"/*.txt "$RAW_DIR"/*.log
WORK=$(mktemp -d /tmp/spillway-load.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user and must read the docroot
DOCROOT=$WORK/www
mkdir -p "$DOCROOT/uploads/public" "$DOCROOT/uploads/private" "$WORK/legacy"
head -c 1024 /dev/urandom >"$DOCROOT/uploads/1k.bin"
head -c 1048576 /dev/urandom >"$DOCROOT/uploads/1m.bin"
truncate -s 1G "$DOCROOT/uploads/1g.bin" # sparse: reads are page-cache zeroes, no disk I/O
LEGACY_MARKER="legacy-backend-page"
{
    printf '<!doctype html>\n<html><head><title>legacy</title></head><body>\n'
    printf '<h1>%s</h1>\n' "$LEGACY_MARKER"
    printf '<p>The old application, served by a separate nginx on 127.0.0.1:%s.</p>\n' "$BACKEND_PORT"
    printf '</body></html>\n'
} >"$WORK/legacy/index.html"
chmod -R a+rX "$WORK"

render() { # template output extra-sed-args...
    local tmpl=$1 out=$2
    shift 2
    sed -e "s|@THREADS@|$THREADS|g" \
        -e "s|@BACKEND_WORKERS@|$BACKEND_WORKERS|g" \
        -e "s|@SPILLWAY_PORT@|$SPILLWAY_PORT|g" \
        -e "s|@NGINX_PORT@|$NGINX_PORT|g" \
        -e "s|@BACKEND_PORT@|$BACKEND_PORT|g" \
        -e "s|@DOCROOT@|$DOCROOT|g" \
        -e "s|@LEGACY_ROOT@|$WORK/legacy|g" \
        -e "s|@SENDFILE@|$NGINX_SENDFILE|g" \
        "$@" "$tmpl" >"$out"
    if grep -n '@[A-Z_]*@' "$out" | grep -v '^[0-9]*:#' >/dev/null; then
        die "unsubstituted placeholder in $out"
    fi
}
mkdir -p "$WORK/nginx" "$WORK/backend"
render "$HERE/spillway.yaml.tmpl" "$WORK/spillway.yaml"
render "$HERE/nginx.conf.tmpl" "$WORK/nginx/nginx.conf" -e "s|@PREFIX@|$WORK/nginx|g"
render "$HERE/backend.conf.tmpl" "$WORK/backend/nginx.conf" -e "s|@PREFIX@|$WORK/backend|g"
cp "$WORK/spillway.yaml" "$RAW_DIR/spillway.yaml"
cp "$WORK/nginx/nginx.conf" "$RAW_DIR/nginx.conf"
cp "$WORK/backend/nginx.conf" "$RAW_DIR/backend.conf"

"$SPILLWAY_BIN" check --config "$WORK/spillway.yaml" >"$RAW_DIR/spillway-check.log" 2>&1 ||
    die "spillway check rejected the generated config:
$(cat "$RAW_DIR/spillway-check.log")"
"$NGINX_BIN" -t -q -e "$WORK/nginx/startup-error.log" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" \
    >"$RAW_DIR/nginx-check.log" 2>&1 || die "nginx -t rejected the generated config:
$(cat "$RAW_DIR/nginx-check.log")"

# ---------------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------------
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port pid name logfile
    local port=$1 pid=$2 name=$3 logf=$4 i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || die "$name exited during startup; its log ($logf):
$(tail -n 20 "$logf")"
        if port_open "$port"; then return 0; fi
        sleep 0.1
    done
    die "$name did not listen on 127.0.0.1:$port within 10 s; log tail:
$(tail -n 20 "$logf")"
}

CPU_IDLE_START=$(cpu_idle_pct)
((CPU_IDLE_START >= 90)) || log "warning: the CPUs are only ${CPU_IDLE_START}% idle before the run; results will be noisy"
for p in "$SPILLWAY_PORT" "$NGINX_PORT" "$BACKEND_PORT"; do
    port_open "$p" && die "127.0.0.1:$p is already in use (set SPILLWAY_PORT / NGINX_PORT / BACKEND_PORT)"
done

start_nginx() { # dir name port -> sets STARTED_PID
    local dir=$1 name=$2 port=$3
    "$NGINX_BIN" -e "$dir/startup-error.log" -p "$dir" -c "$dir/nginx.conf" >"$RAW_DIR/$name.log" 2>&1 &
    STARTED_PID=$!
    track "$STARTED_PID" TERM "$name" # nginx: TERM = fast shutdown
    wait_port "$port" "$STARTED_PID" "$name" "$dir/error.log"
}

log "starting backend nginx on 127.0.0.1:$BACKEND_PORT"
start_nginx "$WORK/backend" backend "$BACKEND_PORT"
BACKEND_PID=$STARTED_PID

log "starting spillway on 127.0.0.1:$SPILLWAY_PORT (threads: $THREADS, RUST_LOG=warn)"
RUST_LOG=warn "$SPILLWAY_BIN" run --config "$WORK/spillway.yaml" >"$RAW_DIR/spillway.log" 2>&1 &
SPILLWAY_PID=$!
track "$SPILLWAY_PID" INT spillway # spillway: SIGINT = stop at once
wait_port "$SPILLWAY_PORT" "$SPILLWAY_PID" spillway "$RAW_DIR/spillway.log"

log "starting nginx on 127.0.0.1:$NGINX_PORT (worker_processes $THREADS, access_log off)"
start_nginx "$WORK/nginx" nginx "$NGINX_PORT"
NGINX_PID=$STARTED_PID

# ---------------------------------------------------------------------------------------------
# Memory
# ---------------------------------------------------------------------------------------------
proc_kib() { # pid field -> KiB (0 if gone)
    awk -v f="$2:" '$1 == f { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}
# nginx: master + workers, summed (RSS counts shared pages in every process)
nginx_pids() { echo "$1" $(pgrep -P "$1" || true); }
sum_kib() { # field pids...
    local f=$1 total=0 p
    shift
    for p in "$@"; do total=$((total + $(proc_kib "$p" "$f"))); done
    echo "$total"
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

sleep 1
SP_IDLE=$(proc_kib "$SPILLWAY_PID" VmRSS)
NG_IDLE=$(sum_kib VmRSS $(nginx_pids "$NGINX_PID"))

stream_big() { # port -> MiB downloaded
    local port=$1 out rc=0
    out=$RAW_DIR/stream-$port.txt
    run_tracked "$out" curl -s -o /dev/null --limit-rate "$MEM_RATE" --max-time "$MEM_SECONDS" \
        -w '%{http_code} %{size_download}\n' "http://127.0.0.1:$port/uploads/1g.bin" || rc=$?
    # 28 = --max-time reached: expected, the file is bigger than rate x time
    ((rc == 0 || rc == 28)) || die "streaming the 1 GiB file from :$port failed (curl exit $rc)"
    read -r code bytes <"$out"
    [[ $code == 200 ]] || die "streaming the 1 GiB file from :$port: status $code, expected 200"
    awk -v b="$bytes" 'BEGIN { printf "%.0f", b / 1048576 }'
}

log "memory: streaming the 1 GiB file to curl --limit-rate $MEM_RATE for ${MEM_SECONDS}s, each server"
SP_STREAMED=$(stream_big "$SPILLWAY_PORT")
SP_PEAK=$(proc_kib "$SPILLWAY_PID" VmHWM)
SP_AFTER=$(proc_kib "$SPILLWAY_PID" VmRSS)
NG_STREAMED=$(stream_big "$NGINX_PORT")
NG_PEAK=$(sum_kib VmHWM $(nginx_pids "$NGINX_PID"))
NG_AFTER=$(sum_kib VmRSS $(nginx_pids "$NGINX_PID"))
kill -0 "$SPILLWAY_PID" 2>/dev/null || die "spillway died during the memory test; log: $RAW_DIR/spillway.log"

# ---------------------------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------------------------
WORKLOADS=(a b c d e f)
declare -A NAME PATHS
NAME[a]="(a) 1 KiB file hit"
NAME[b]="(b) 1 MiB file hit"
NAME[c]="(c) miss -> public 302"
NAME[d]="(d) miss -> private 302 (nginx: unsigned)"
NAME[e]="(e) proxied to keep-alive backend"
NAME[f]="(f) conditional GET -> 304"
PATHS[a]=/uploads/1k.bin
PATHS[b]=/uploads/1m.bin
PATHS[c]=/uploads/public/missing.png
PATHS[d]=/uploads/private/missing.pdf
PATHS[e]=/legacy/page.html
PATHS[f]=/uploads/1k.bin
S3_BASE="http://127.0.0.1:9000/example-media"

declare -A PORT PID ETAG
PORT[spillway]=$SPILLWAY_PORT
PORT[nginx]=$NGINX_PORT
PID[spillway]=$SPILLWAY_PID
PID[nginx]=$NGINX_PID

# ETags differ between the two servers: ask each for its own.
for s in spillway nginx; do
    ETAG[$s]=$(curl -s -o /dev/null -D - "http://127.0.0.1:${PORT[$s]}${PATHS[f]}" |
        awk 'tolower($1) == "etag:" { sub(/\r$/, ""); sub(/^[^:]*: */, ""); print }')
    [[ -n ${ETAG[$s]} ]] || die "$s sent no ETag for ${PATHS[f]}"
done

req_headers() { # workload server -> wrk/curl -H args, one per line
    if [[ $1 == f ]]; then printf '%s\n' "If-None-Match: ${ETAG[$2]}"; fi
}

# curl check before every workload: the expected status and the expected kind of answer.
check() { # workload server
    local w=$1 s=$2 url hdrs body code size loc fail=""
    url="http://127.0.0.1:${PORT[$s]}${PATHS[$w]}"
    kill -0 "${PID[$s]}" 2>/dev/null || die "$s is no longer running (logs: $RAW_DIR)"
    hdrs=$WORK/check.h
    body=$WORK/check.b
    local -a h=()
    local line
    while IFS= read -r line; do h+=(-H "$line"); done < <(req_headers "$w" "$s")
    read -r code size < <(curl -s -o "$body" -D "$hdrs" -w '%{http_code} %{size_download}\n' \
        --max-time 10 "${h[@]}" "$url" || echo "000 0")
    loc=$(awk 'tolower($1) == "location:" { sub(/\r$/, ""); sub(/^[^:]*: */, ""); print }' "$hdrs")
    case $w in
    a) [[ $code == 200 && $size == 1024 ]] || fail="expected 200 with 1024 bytes" ;;
    b) [[ $code == 200 && $size == 1048576 ]] || fail="expected 200 with 1048576 bytes" ;;
    c) [[ $code == 302 && $loc == "$S3_BASE/uploads/public/missing.png" ]] ||
        fail="expected 302 to $S3_BASE/uploads/public/missing.png" ;;
    d) if [[ $s == spillway ]]; then
        [[ $code == 302 && $loc == "$S3_BASE/uploads/private/missing.pdf?"*X-Amz-Signature=* ]] ||
            fail="expected 302 to a presigned $S3_BASE/uploads/private/missing.pdf?...X-Amz-Signature=..."
    else
        [[ $code == 302 && $loc == "$S3_BASE/uploads/private/missing.pdf" ]] ||
            fail="expected 302 to $S3_BASE/uploads/private/missing.pdf"
    fi ;;
    e) [[ $code == 200 ]] && grep -q "$LEGACY_MARKER" "$body" ||
        fail="expected 200 with the backend's page (containing '$LEGACY_MARKER')" ;;
    f) [[ $code == 304 && $size == 0 ]] || fail="expected 304 for If-None-Match: ${ETAG[$s]}" ;;
    esac
    if [[ -n $fail ]]; then
        die "check failed before workload ${NAME[$w]}: $s GET ${PATHS[$w]}: $fail;
got status $code, $size body bytes${loc:+, Location: $loc}. Response headers:
$(tr -d '\r' <"$hdrs")
(server logs: $RAW_DIR)"
    fi
}

# One wrk run; appends its numbers to the RES_* arrays unless it is a warm-up.
declare -A RES_RPS RES_P99 RES_MIBS RES_ERR RES_NON RES_SOCK RES_BPR
run_wrk() { # workload server round|warmup duration
    local w=$1 s=$2 r=$3 d=$4 out stat line
    out=$RAW_DIR/wrk-$w-$s-$r.txt
    local -a h=()
    while IFS= read -r line; do h+=(-H "$line"); done < <(req_headers "$w" "$s")
    run_tracked "$out" wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"$d" --latency -s "$HERE/report.lua" \
        "${h[@]}" "http://127.0.0.1:${PORT[$s]}${PATHS[$w]}" ||
        die "wrk failed ($s, ${NAME[$w]}):
$(tail -n 20 "$out")"
    [[ $r == warmup ]] && return 0
    stat=$(grep '^WRKSTAT ' "$out" | tail -n 1) || die "no WRKSTAT line in $out"
    # requests duration_us bytes p50 p99 max connect read write timeout status
    local -a v
    read -r -a v < <(sed -e 's/^WRKSTAT //' -e 's/[a-z0-9_]*=//g' <<<"$stat")
    local rps p99 mibs sock bpr
    rps=$(awk -v n="${v[0]}" -v us="${v[1]}" 'BEGIN { printf "%.1f", n / (us / 1e6) }')
    mibs=$(awk -v b="${v[2]}" -v us="${v[1]}" 'BEGIN { printf "%.1f", b / 1048576 / (us / 1e6) }')
    bpr=$(awk -v b="${v[2]}" -v n="${v[0]}" 'BEGIN { printf "%.0f", n ? b / n : 0 }')
    p99=${v[4]}
    sock=$((v[6] + v[7] + v[8] + v[9]))
    RES_RPS[$w,$s]+="$rps "
    RES_P99[$w,$s]+="$p99 "
    RES_MIBS[$w,$s]+="$mibs "
    RES_BPR[$w,$s]+="$bpr "
    RES_NON[$w,$s]=$((${RES_NON[$w,$s]:-0} + v[10]))
    RES_SOCK[$w,$s]=$((${RES_SOCK[$w,$s]:-0} + sock))
    printf '[load]   %-8s %-44s %10s req/s  p99 %8s us  %s B/resp  non-2xx/3xx %s  socket errors %s (c%s r%s w%s t%s)\n' \
        "$s" "${NAME[$w]}" "$rps" "$p99" "$bpr" "${v[10]}" "$sock" "${v[6]}" "${v[7]}" "${v[8]}" "${v[9]}" >&2
}

median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

if [[ $WARMUP != 0 && $WARMUP != 0[smh] ]]; then
    log "warm-up: $WARMUP per workload and server (not measured)"
    for w in "${WORKLOADS[@]}"; do
        for s in spillway nginx; do
            check "$w" "$s"
            run_wrk "$w" "$s" warmup "$WARMUP"
        done
    done
fi

for ((r = 1; r <= ROUNDS; r++)); do
    # alternate which server goes first, so drift within a round cancels too
    if ((r % 2)); then order=(spillway nginx); else order=(nginx spillway); fi
    log "round $r/$ROUNDS: wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION, ${order[0]} first"
    for w in "${WORKLOADS[@]}"; do
        for s in "${order[@]}"; do
            check "$w" "$s"
            run_wrk "$w" "$s" "$r" "$DURATION"
        done
    done
done

SP_LOAD_PEAK=$(proc_kib "$SPILLWAY_PID" VmHWM)
SP_LOAD_RSS=$(proc_kib "$SPILLWAY_PID" VmRSS)
NG_LOAD_PEAK=$(sum_kib VmHWM $(nginx_pids "$NGINX_PID"))
NG_LOAD_RSS=$(sum_kib VmRSS $(nginx_pids "$NGINX_PID"))
kill -0 "$SPILLWAY_PID" 2>/dev/null || die "spillway died during the run; log: $RAW_DIR/spillway.log"
SP_WARNINGS=$(grep -c . "$RAW_DIR/spillway.log" || true)

# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------
fmt_int() { awk -v x="$1" 'BEGIN { printf "%.0f", x }'; }
fmt_ms() { awk -v us="$1" 'BEGIN { if (us < 1000) printf "%.0f us", us; else printf "%.2f ms", us / 1000 }'; }

TABLE="| workload | spillway req/s | nginx req/s | ratio (spillway/nginx) | spillway p99 | nginx p99 | non-2xx/3xx + socket errors (spillway / nginx) |
|---|---:|---:|---:|---:|---:|---:|"
ERRORS_SEEN=""
for w in "${WORKLOADS[@]}"; do
    # shellcheck disable=SC2086
    srps=$(median ${RES_RPS[$w,spillway]})
    # shellcheck disable=SC2086
    nrps=$(median ${RES_RPS[$w,nginx]})
    # shellcheck disable=SC2086
    sp99=$(median ${RES_P99[$w,spillway]})
    # shellcheck disable=SC2086
    np99=$(median ${RES_P99[$w,nginx]})
    ratio=$(awk -v a="$srps" -v b="$nrps" 'BEGIN { printf "%.2f", b ? a / b : 0 }')
    scell=$(fmt_int "$srps")
    ncell=$(fmt_int "$nrps")
    if [[ $w == b ]]; then
        # shellcheck disable=SC2086
        scell+=" ($(fmt_int "$(median ${RES_MIBS[$w,spillway]})") MiB/s)"
        # shellcheck disable=SC2086
        ncell+=" ($(fmt_int "$(median ${RES_MIBS[$w,nginx]})") MiB/s)"
    fi
    se=$((${RES_NON[$w,spillway]} + ${RES_SOCK[$w,spillway]}))
    ne=$((${RES_NON[$w,nginx]} + ${RES_SOCK[$w,nginx]}))
    for s in spillway nginx; do
        if ((${RES_NON[$w,$s]} + ${RES_SOCK[$w,$s]} > 0)); then
            ERRORS_SEEN+="- $s, ${NAME[$w]}: ${RES_NON[$w,$s]} non-2xx/3xx responses, ${RES_SOCK[$w,$s]} socket errors (all rounds; raw: $RAW_DIR/wrk-$w-$s-*.txt)
"
        fi
    done
    TABLE+="
| ${NAME[$w]} | $scell | $ncell | $ratio | $(fmt_ms "$sp99") | $(fmt_ms "$np99") | $se / $ne |"
done

NGINX_VERSION=$("$NGINX_BIN" -v 2>&1 | sed 's/^nginx version: //')
WRK_VERSION=$( (wrk -v 2>&1 || true) | awk 'NR == 1 { print $1, $2 }')
SPILLWAY_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null) ]]; then SPILLWAY_REV+=" + uncommitted changes"; fi
CPU_MODEL=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo 2>/dev/null || echo unknown)
ELAPSED=$(($(date +%s) - START_TIME))

REPORT="# spillway vs nginx: load benchmark

$(date -u '+%Y-%m-%d %H:%M:%S UTC') -- \`bash benches/load/run.sh\`

- machine: $(nproc) CPUs ($CPU_MODEL), kernel $(uname -r), $(awk '/^MemTotal/ { printf "%.0f GiB RAM", $2 / 1048576 }' /proc/meminfo); before the servers started: load average $LOADAVG_START, CPU idle $CPU_IDLE_START% (other work on the machine skews both columns)
- spillway $SPILLWAY_REV (release build), $NGINX_VERSION, $WRK_VERSION
- both servers: $THREADS workers (spillway \`threads: $THREADS\`, nginx \`worker_processes $THREADS\`), 127.0.0.1 only, same document root
- logging: nginx \`access_log off\`, spillway \`RUST_LOG=warn\` (no per-request lines on either side)
- nginx: \`sendfile $NGINX_SENDFILE\`, \`etag on\`, \`try_files \$uri @s3\` -> \`return 302\`, upstream \`keepalive 64\` with \`proxy_http_version 1.1\`; nginx cannot presign, so (d) is an unsigned 302 there
- backend: a separate nginx ($BACKEND_WORKERS worker) serving a $(stat -c %s "$WORK/legacy/index.html")-byte static page, keep-alive
- wrk -t$WRK_THREADS -c$CONNECTIONS -d$DURATION --latency, keep-alive; $ROUNDS round(s), spillway and nginx alternating (first server swapped every round), warm-up $WARMUP; medians of the rounds; wrk runs on the same $(nproc) CPUs as the servers

$TABLE

Memory (VmRSS / VmHWM from /proc; nginx = master + $THREADS workers summed):

| | idle after startup | peak while streaming 1 GiB to \`curl --limit-rate $MEM_RATE\` for ${MEM_SECONDS}s | peak - idle | streamed | peak over the whole load run |
|---|---:|---:|---:|---:|---:|
| spillway | $(mib "$SP_IDLE") | $(mib "$SP_PEAK") | $(mib $((SP_PEAK - SP_IDLE))) | ${SP_STREAMED} MiB | $(mib "$SP_LOAD_PEAK") |
| nginx | $(mib "$NG_IDLE") | $(mib "$NG_PEAK") | $(mib $((NG_PEAK - NG_IDLE))) | ${NG_STREAMED} MiB | $(mib "$NG_LOAD_PEAK") |
"
if [[ -n $ERRORS_SEEN ]]; then
    REPORT+="
Errors reported by wrk (responses with status >= 400, and connect/read/write/timeout errors):
$ERRORS_SEEN"
else
    REPORT+="
wrk reported no responses with status >= 400 and no socket errors.
"
fi
if ((SP_WARNINGS > 0)); then
    # tracing's lines start with a timestamp; group the rest (first 200 characters)
    REPORT+="
spillway logged $SP_WARNINGS line(s) at warn or above ($RAW_DIR/spillway.log), most frequent first
(wrk stops each run with requests in flight, and the memory test's curl stops mid-body):

\`\`\`
$(sed -E 's/^[0-9]{4}-[0-9-]+T[0-9:.]+Z +//' "$RAW_DIR/spillway.log" | cut -c1-200 | sort | uniq -c | sort -rn | head -n 8)
\`\`\`
"
fi
REPORT+="
Total run time: ${ELAPSED}s (including build and setup).
"

printf '\n%s\n' "$REPORT"
mkdir -p "$OUT_DIR"
printf '%s' "$REPORT" >"$OUT_DIR/results.md"
log "written: $OUT_DIR/results.md (raw wrk output and logs: $RAW_DIR)"
exit 0
}
