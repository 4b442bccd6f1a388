#!/usr/bin/env bash
# The hot-path cost of metrics and of the access log: the same server with neither, with
# metrics (an admin listener), with a JSON access log to a file, and with both, on a public 302
# and a 1 KiB file, wrk on loopback, alternating rounds, medians.
#
#   bash benches/telemetry/run.sh        (installs wrk when missing)
#   ROUNDS=5 DURATION=5s bash benches/telemetry/run.sh
# Results: target/telemetry-bench/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
work=$(pwd)/target/telemetry-bench
rm -rf "$work" && mkdir -p "$work/www"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin spillway 2>&1 | tail -1
head -c 1024 /dev/urandom > "$work/www/1k.bin"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start() {  # variant port
  local extra=""
  case "$1" in
    metrics) extra=$'access_log:\n  format: off\nadmin: "127.0.0.1:'"$(free_port)"'"' ;;
    log) extra=$'access_log:\n  format: json\n  path: access.log' ;;
    both) extra=$'admin: "127.0.0.1:'"$(free_port)"$'"\naccess_log:\n  format: json\n  path: access.log' ;;
    none) extra=$'access_log:\n  format: off' ;;
  esac
  cat > "$work/spillway.yaml" <<YAML
listen: "127.0.0.1:$2"
threads: 2
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "http://127.0.0.1:9"
    credentials: { access_key_id: AK, secret_access_key: SK }
routes:
  - prefix: /f
    root: www
    bucket: media
    access: public
runtime_dir: run
$extra
YAML
  rm -f "$work/access.log"
  target/release/spillway run --config "$work/spillway.yaml" >"$work/spillway.log" 2>&1 &
  pid=$!
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return; sleep 0.05; done
  echo "spillway did not start" >&2; cat "$work/spillway.log" >&2; exit 1
}

rate() {  # port path expected-status
  local status
  status=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1$2")
  [ "$status" = "$3" ] || { echo "expected $3 for $2, got $status" >&2; exit 1; }
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A results
for round in $(seq "$ROUNDS"); do
  for variant in none metrics log both; do
    port=$(free_port); start "$variant" "$port"
    results[$variant.302]+="$(rate "$port" /f/missing.png 302) "
    results[$variant.hit]+="$(rate "$port" /f/1k.bin 200) "
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "round $round $variant done"
  done
done

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, 2 workers, wrk -t2 -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, medians"
  echo
  echo "| workload | neither req/s | metrics | JSON access log | both |"
  echo "|---|---:|---:|---:|---:|"
  for workload in 302 hit; do
    base=$(echo "${results[none.$workload]}" | tr ' ' '\n' | grep . | median)
    line="| $([ $workload = 302 ] && echo 'public 302' || echo '1 KiB hit') | $base"
    for variant in metrics log both; do
      v=$(echo "${results[$variant.$workload]}" | tr ' ' '\n' | grep . | median)
      line+=" | $v ($(echo "($v / $base - 1) * 100" | bc -l | xargs printf '%+.1f')%)"
    done
    echo "$line |"
  done
} > "$work/results.md"
cat "$work/results.md"
