#!/usr/bin/env bash
# Offload throughput, side by side with `rclone copy` and `aws s3 cp --recursive` (awscli v1)
# against the same local S3 server (examples/local_s3: s3s-fs, which checks signatures and
# checksums):
#   (a) 10,000 files of 4 KiB   -> files per second
#   (b) one 1 GiB file          -> MB/s, and peak RSS (memory must stay flat)
# Each tool gets a fresh, empty bucket; all use 8 transfers at a time, 8 MiB parts and a
# 64 MiB multipart threshold. (a) and (b) run ROUNDS times, tools alternating; medians.
# spillway runs with --min-age 0s: a copy's ctime is new, and age counts from mtime and ctime.
# spillway runs with `after: keep` (upload + verify, as rclone copy also checks what it sent)
# and, once more, with the default `after: delete`.
#   (c) --watch at scale, once: `offload --watch` (after: delete, min_age: 0s, concurrency 8)
#       on an empty root, then 100,000 files of 1 KiB arrive in 10 bursts; in each, half are
#       written to a new directory outside the root and `mv`'d in, half straight into new
#       nested directories -> files per second from the first file created until the root
#       holds none, and the daemon's peak RSS (VmHWM).
#
#   bash benches/offload/run.sh            (as root on Debian: installs rclone when missing,
#                                           and awscli into target/offload-bench/venv)
#   SMALL=2000 BIG_MIB=256 ROUNDS=1 WATCH_FILES=20000 bash benches/offload/run.sh   (quicker)
#   WATCH_ONLY=1 SMALL=1 BIG_MIB=1 bash benches/offload/run.sh  ((c) alone)
# Results: target/offload-bench/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

SMALL=${SMALL:-10000}
BIG_MIB=${BIG_MIB:-1024}
ROUNDS=${ROUNDS:-3}
WATCH_FILES=${WATCH_FILES:-100000}
work=$(pwd)/target/offload-bench
# Everything but the awscli venv (kept between runs: installing it takes a while).
mkdir -p "$work" && find "$work" -mindepth 1 -maxdepth 1 ! -name venv -exec rm -rf {} +

if ! command -v rclone >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rclone >/dev/null
fi
# `aws --version`, not `command -v`: a pyenv shim exists even where awscli is not installed.
aws=aws
if ! aws --version >/dev/null 2>&1; then
  aws=$work/venv/bin/aws
  if ! "$aws" --version >/dev/null 2>&1; then
    rm -rf "$work/venv" && python3 -m venv "$work/venv"
    "$work/venv/bin/pip" install -q awscli
  fi
fi
# awscli reads its s3 transfer settings from a config file: a private one. Sizes are binary
# here (8MB = 8 MiB), as rclone's 8M and spillway's 8MiB.
export AWS_CONFIG_FILE=$work/aws-config
"$aws" configure set s3.max_concurrent_requests 8
"$aws" configure set s3.multipart_chunksize 8MB
"$aws" configure set s3.multipart_threshold 64MB
cargo build --release --bin spillway --example local_s3 2>&1 | tail -1
spillway=$(pwd)/target/release/spillway
local_s3=$(pwd)/target/release/examples/local_s3

echo "generating $SMALL files of 4 KiB and one file of $BIG_MIB MiB"
mkdir -p "$work/data/small" "$work/data/big"
python3 - "$work/data/small" "$SMALL" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    d = os.path.join(root, f"{i // 1000:02d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(4096))
PY
head -c $((BIG_MIB << 20)) /dev/urandom > "$work/data/big/big.bin"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
s3_pid=
start_s3() {  # a fresh, empty bucket `bench`
  [ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null && wait "$s3_pid" 2>/dev/null || true
  rm -rf "$work/s3"
  "$local_s3" --port "$port" --root "$work/s3" --bucket bench --access-key AKBENCH --secret-key SKBENCH >/dev/null &
  s3_pid=$!
  for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return; sleep 0.05; done
  echo "local S3 did not start" >&2; exit 1
}
watch_pid=
trap 'for p in $s3_pid $watch_pid; do kill "$p" 2>/dev/null || true; done' EXIT

# A copy of a data set for one run (offload may delete it), written back before the clock
# starts so no run pays for the previous one's writeback.
stage() { rm -rf "$work/run" && cp -a "$work/data/$1" "$work/run" && sync; }

config() {  # after [min_age]
  cat > "$work/proxy.yaml" <<YAML
listen: "127.0.0.1:1"
buckets:
  bench:
    bucket: bench
    region: us-east-1
    endpoint: "http://127.0.0.1:$port"
    credentials: { access_key_id: AKBENCH, secret_access_key: SKBENCH }
routes:
  - prefix: /bench
    root: run
    bucket: bench
    key_prefix: data/
    offload:
      min_age: ${2:-1m}
      after: $1
      concurrency: 8
      multipart_threshold: 64MiB
YAML
}

# Runs a command; leaves "seconds peak_rss_kib" in $work/last.
measure() {
  local t0 t1
  t0=$(date +%s.%N)
  /usr/bin/time -f '%M' -o "$work/rss" "$@" >"$work/out" 2>"$work/err" || { cat "$work/out" "$work/err" >&2; exit 1; }
  t1=$(date +%s.%N)
  echo "$(echo "$t1 - $t0" | bc -l) $(cat "$work/rss")" > "$work/last"
}

# How many objects and bytes landed in the bucket (s3s-fs keeps them as files).
landed() { find "$work/s3/bench/data" -type f | wc -l; }
landed_bytes() { find "$work/s3/bench/data" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }

run_spillway() {  # data after
  stage "$1"; config "$2"; start_s3
  measure "$spillway" offload --config "$work/proxy.yaml" --min-age 0s
}
run_rclone() {  # data
  stage "$1"; start_s3
  measure env -u AWS_CA_BUNDLE rclone copy --config /dev/null --s3-no-check-bucket \
    --transfers 8 --checkers 8 --s3-upload-concurrency 8 --s3-chunk-size 8M \
    --s3-upload-cutoff 64M --low-level-retries 1 \
    "$work/run" ":s3,provider=Other,endpoint='http://127.0.0.1:$port',access_key_id=AKBENCH,secret_access_key=SKBENCH,region=us-east-1:bench/data/"
}
# awscli's default checksum setting (AWS_REQUEST_CHECKSUM_CALCULATION=when_supported, unset
# here so the default holds): over plain http it sends a CRC32 of each PutObject and
# UploadPart body as an `x-amz-checksum-crc32` header (CreateMultipartUpload names CRC32), and
# still signs the payload's SHA-256 (`x-amz-content-sha256`), so it reads every byte twice
# before sending. Nothing is read back after the upload.
run_aws() {  # data
  stage "$1"; start_s3
  measure env -u AWS_CA_BUNDLE -u AWS_PROFILE -u AWS_SESSION_TOKEN \
    -u AWS_REQUEST_CHECKSUM_CALCULATION -u AWS_ENDPOINT_URL \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_ACCESS_KEY_ID=AKBENCH \
    AWS_SECRET_ACCESS_KEY=SKBENCH AWS_DEFAULT_REGION=us-east-1 \
    "$aws" s3 cp --recursive --only-show-errors --endpoint-url "http://127.0.0.1:$port" \
    "$work/run" s3://bench/data/
}

results="$work/results.md"
big_mb=$(echo "$BIG_MIB * 1048576 / 1000000" | bc -l)

# One timed run (in this shell: it starts and stops the S3 server); checks that every object
# landed; leaves "seconds peak_rss_kib" in $work/last.
one() {  # tool data
  case "$1" in
    rclone) run_rclone "$2" ;;
    aws) run_aws "$2" ;;
    keep|delete) run_spillway "$2" "$1" ;;
  esac
  case "$2" in
    small) [ "$(landed)" -eq "$SMALL" ] || { echo "$1 landed $(landed) of $SMALL objects" >&2; exit 1; } ;;
    big) [ "$(landed_bytes)" -eq $((BIG_MIB << 20)) ] || { echo "$1 landed $(landed_bytes) bytes" >&2; exit 1; } ;;
  esac
  if [ "$1" = delete ] && [ "$(find "$work/run" -type f | wc -l)" -ne 0 ]; then
    echo "delete left files behind" >&2; exit 1
  fi
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A secs rss
# WATCH_ONLY=1: (c) alone.
copies="small big"
[ "${WATCH_ONLY:-0}" = 1 ] && copies=""
for data in $copies; do
  for round in $(seq "$ROUNDS"); do
    for tool in rclone aws keep delete; do
      one "$tool" "$data"
      read -r s r < "$work/last"
      echo "round $round $data $tool: ${s}s, ${r} KiB"
      secs[$data.$tool]+="$s "
      rss[$data.$tool]+="$r "
    done
  done
done

# (c) --watch at scale: the daemon on an empty root; WATCH_FILES files of 1 KiB arrive in 10
# bursts. Timed from the first file created until `find` sees none left in the root.
watch_run() {
  rm -rf "$work/run" "$work/outside" && mkdir -p "$work/run" "$work/outside"
  config delete 0s; start_s3
  "$spillway" offload --watch --config "$work/proxy.yaml" --admin off >"$work/watch.log" 2>&1 &
  watch_pid=$!
  for _ in $(seq 300); do
    grep -q '^watching ' "$work/watch.log" && break
    kill -0 "$watch_pid" 2>/dev/null || { cat "$work/watch.log" >&2; echo "offload --watch exited" >&2; exit 1; }
    sleep 0.1
  done
  grep -q '^watching ' "$work/watch.log" || { cat "$work/watch.log" >&2; echo "offload --watch is not watching" >&2; exit 1; }
  # Prints the time just before the first file is created.
  python3 - "$work/outside" "$work/run" "$WATCH_FILES" > "$work/watch.t0" <<'PY'
import os, subprocess, sys, time
outside, root, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
bursts, per_dir = 10, 500
def write(path):
    with open(path, "wb") as f:
        f.write(os.urandom(1024))
t0, i = time.time(), 0
for b in range(bursts):
    count = n // bursts + (n % bursts if b == bursts - 1 else 0)
    moved = count // 2
    # Half written into a new directory outside the root, then renamed into the tree.
    staged = os.path.join(outside, f"m{b:02d}")
    os.mkdir(staged)
    for _ in range(moved):
        write(os.path.join(staged, f"g{i:06d}.bin")); i += 1
    subprocess.run(["mv", staged, os.path.join(root, f"m{b:02d}")], check=True)
    # Half straight into new nested directories of the root.
    for k in range(count - moved):
        d = os.path.join(root, f"b{b:02d}", f"d{k // per_dir:03d}")
        if k % per_dir == 0:
            os.makedirs(d)
        write(os.path.join(d, f"f{i:06d}.bin")); i += 1
assert i == n, (i, n)
print(f"{t0:.6f}")
PY
  local t0 t1 left deadline
  t0=$(cat "$work/watch.t0")
  deadline=$(echo "$t0 + 1800" | bc -l)
  while left=$(find "$work/run" -type f | wc -l); [ "$left" -ne 0 ]; do
    kill -0 "$watch_pid" 2>/dev/null || { tail -20 "$work/watch.log" >&2; echo "offload --watch died, $left files left" >&2; exit 1; }
    if [ "$(echo "$(date +%s.%N) > $deadline" | bc -l)" -eq 1 ]; then
      tail -20 "$work/watch.log" >&2; echo "offload --watch: $left files left after 30 min" >&2; exit 1
    fi
    sleep 0.5
  done
  t1=$(date +%s.%N)
  watch_secs=$(echo "$t1 - $t0" | bc -l)
  watch_hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/$watch_pid/status")
  kill -TERM "$watch_pid"
  watch_exit=0; wait "$watch_pid" || watch_exit=$?
  watch_pid=
  [ "$watch_exit" -eq 0 ] || { tail -20 "$work/watch.log" >&2; echo "warning: offload --watch exited $watch_exit after SIGTERM" >&2; }
  watch_landed=$(landed)
  [ "$watch_landed" -eq "$WATCH_FILES" ] || { echo "offload --watch landed $watch_landed of $WATCH_FILES objects" >&2; exit 1; }
  [ "$(landed_bytes)" -eq $((WATCH_FILES * 1024)) ] || { echo "offload --watch landed $(landed_bytes) bytes" >&2; exit 1; }
  echo "watch: $WATCH_FILES files gone in ${watch_secs}s, VmHWM ${watch_hwm} KiB, exit $watch_exit"
}
watch_run

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $ROUNDS alternating rounds, medians; SMALL=$SMALL BIG_MIB=$BIG_MIB WATCH_FILES=$WATCH_FILES; rclone $(rclone version 2>/dev/null | head -1 | awk '{print $2}'), $("$aws" --version 2>&1 | awk '{print $1}')"
  echo
  if [ -n "$copies" ]; then
  echo "| workload | tool | seconds | rate | peak RSS |"
  echo "|---|---|---:|---:|---:|"
  for data in small big; do
    for tool in rclone aws keep delete; do
      s=$(echo "${secs[$data.$tool]}" | tr ' ' '\n' | grep . | median)
      r=$(echo "${rss[$data.$tool]}" | tr ' ' '\n' | grep . | sort -n | tail -1)
      case $tool in
        rclone) name="rclone copy";; aws) name="aws s3 cp --recursive";; *) name="spillway offload ($tool)";;
      esac
      if [ "$data" = small ]; then
        rate=$(echo "$SMALL / $s" | bc -l | xargs printf '%.0f files/s'); what="(a) $SMALL × 4 KiB"
      else
        rate=$(echo "$big_mb / $s" | bc -l | xargs printf '%.0f MB/s'); what="(b) 1 × $BIG_MIB MiB"
      fi
      printf '| %s | %s | %.2f | %s | %d MiB |\n' "$what" "$name" "$s" "$rate" $(( r / 1024 ))
      eval "med_${data}_${tool}=$s"
    done
  done
  echo
  echo "spillway (keep) / rclone, by rate: (a) $(echo "$med_small_rclone / $med_small_keep" | bc -l | xargs printf '%.2f')×," \
       "(b) $(echo "$med_big_rclone / $med_big_keep" | bc -l | xargs printf '%.2f')×"
  echo
  echo "spillway (keep) / aws s3 cp, by rate: (a) $(echo "$med_small_aws / $med_small_keep" | bc -l | xargs printf '%.2f')×," \
       "(b) $(echo "$med_big_aws / $med_big_keep" | bc -l | xargs printf '%.2f')×"
  echo
  fi
  echo "(c) --watch at scale, one run: after delete, min_age 0s, concurrency 8; 10 bursts, half \`mv\`'d in, half written in place"
  echo
  echo "| workload | tool | seconds | rate | peak RSS (VmHWM) | exit after SIGTERM |"
  echo "|---|---|---:|---:|---:|---:|"
  printf '| (c) %s × 1 KiB | spillway offload --watch (delete) | %.2f | %s | %d MiB | %d |\n' \
    "$WATCH_FILES" "$watch_secs" "$(echo "$WATCH_FILES / $watch_secs" | bc -l | xargs printf '%.0f files/s')" \
    $(( watch_hwm / 1024 )) "$watch_exit"
} > "$results"
cat "$results"
