#!/usr/bin/env bash
# Offload throughput, side by side with `rclone copy` against the same local S3 server
# (examples/local_s3: s3s-fs, which checks signatures and checksums):
#   (a) 10,000 files of 4 KiB   -> files per second
#   (b) one 1 GiB file          -> MB/s, and peak RSS (memory must stay flat)
# Each tool gets a fresh, empty bucket; both use 8 transfers at a time and 8 MiB parts.
# spillway runs with --min-age 0s: a copy's ctime is new, and age counts from mtime and ctime.
# spillway runs with `after: keep` (upload + verify, as rclone copy also checks what it sent)
# and, once more, with the default `after: delete`.
#
#   bash benches/offload/run.sh            (as root on Debian: installs rclone when missing)
#   SMALL=2000 BIG_MIB=256 bash benches/offload/run.sh   (a quicker run)
# Results: target/offload-bench/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

SMALL=${SMALL:-10000}
BIG_MIB=${BIG_MIB:-1024}
work=$(pwd)/target/offload-bench
rm -rf "$work" && mkdir -p "$work"

if ! command -v rclone >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq rclone >/dev/null
fi
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
trap '[ -n "$s3_pid" ] && kill "$s3_pid" 2>/dev/null || true' EXIT

# A copy of a data set for one run (offload may delete it), written back before the clock
# starts so no run pays for the previous one's writeback.
stage() { rm -rf "$work/run" && cp -a "$work/data/$1" "$work/run" && sync; }

config() {  # after
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
      min_age: 1m
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

ROUNDS=${ROUNDS:-3}
results="$work/results.md"
big_mb=$(echo "$BIG_MIB * 1048576 / 1000000" | bc -l)

# One timed run (in this shell: it starts and stops the S3 server); checks that every object
# landed; leaves "seconds peak_rss_kib" in $work/last.
one() {  # tool data
  case "$1" in
    rclone) run_rclone "$2" ;;
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
for data in small big; do
  for round in $(seq "$ROUNDS"); do
    for tool in rclone keep delete; do
      one "$tool" "$data"
      read -r s r < "$work/last"
      echo "round $round $data $tool: ${s}s, ${r} KiB"
      secs[$data.$tool]+="$s "
      rss[$data.$tool]+="$r "
    done
  done
done

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $ROUNDS alternating rounds, medians; SMALL=$SMALL BIG_MIB=$BIG_MIB; rclone $(rclone version 2>/dev/null | head -1 | awk '{print $2}')"
  echo
  echo "| workload | tool | seconds | rate | peak RSS |"
  echo "|---|---|---:|---:|---:|"
  for data in small big; do
    for tool in rclone keep delete; do
      s=$(echo "${secs[$data.$tool]}" | tr ' ' '\n' | grep . | median)
      r=$(echo "${rss[$data.$tool]}" | tr ' ' '\n' | grep . | sort -n | tail -1)
      case $tool in rclone) name="rclone copy";; *) name="spillway offload ($tool)";; esac
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
} > "$results"
cat "$results"
