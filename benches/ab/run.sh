#!/usr/bin/env bash
# spillway against itself: the working tree's build and an earlier commit's, on the same
# workloads with nothing new configured, to show a change made no workload slower. A 1 KiB file
# hit, a 304, a public and a presigned 302, and a GET proxied to nginx (keep-alive). Both
# servers get the same config (keys every version has); wrk on loopback; the two alternate in
# every round; medians; the ratio is new / base.
#
#   bash benches/ab/run.sh 5461be9               (builds that commit in target/ab/; wrk, nginx)
#   bash benches/ab/run.sh 5461be9 f256a16       (two commits; the second instead of the tree)
#   ROUNDS=5 DURATION=5s WORKERS=1 WORKLOADS="hit 304" bash benches/ab/run.sh 5461be9
# Results: target/ab/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

BASE=${1:?usage: bash benches/ab/run.sh BASE_COMMIT [NEW_COMMIT]}
NEW=${2:-}
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
WORKERS=${WORKERS:-2}
root=$(pwd)
work=$root/target/ab
mkdir -p "$work"
for tool in wrk nginx; do
  command -v "$tool" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk nginx-light >/dev/null; }
done

# A commit's binary, built once per commit in its own worktree and target directory.
built() {  # commit
  local bin
  bin=$work/spillway-$(git rev-parse --short "$1")
  if [ ! -x "$bin" ]; then
    rm -rf "$work/tree" && git worktree prune
    git worktree add --detach "$work/tree" "$1" >/dev/null
    (cd "$work/tree" && CARGO_TARGET_DIR=$work/target-commits cargo build --release --bin spillway 2>&1 | tail -1) >&2
    cp "$work/target-commits/release/spillway" "$bin"
    git worktree remove --force "$work/tree"
  fi
  echo "$bin"
}
base_bin=$(built "$BASE")
if [ -n "$NEW" ]; then
  new_bin=$(built "$NEW")
  new_name=$(git rev-parse --short "$NEW")
else
  cargo build --release --bin spillway 2>&1 | tail -1
  new_bin=$root/target/release/spillway
  new_name="$(git rev-parse --short HEAD)$(git diff --quiet || echo ' + working tree')"
fi

rm -rf "$work/run" && mkdir -p "$work/run/www/static"
head -c 1024 /dev/urandom > "$work/run/www/static/1k.bin"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# The application: nginx answering a small page, its own process.
backend=$(free_port)
cat > "$work/run/nginx.conf" <<NGINX
worker_processes 1;
pid $work/run/nginx.pid;
error_log $work/run/nginx.err warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$backend; location / { return 200 "legacy page\n"; } }
}
NGINX
nginx -c "$work/run/nginx.conf"
trap 'kill $(cat "$work/run/nginx.pid") 2>/dev/null || true; kill $pid 2>/dev/null || true' EXIT

start() {  # binary port
  cat > "$work/run/spillway.yaml" <<YAML
listen: "127.0.0.1:$2"
threads: $WORKERS
runtime_dir: run
access_log:
  format: off
upstreams:
  legacy:
    address: "127.0.0.1:$backend"
default_upstream: legacy
buckets:
  media:
    bucket: media
    region: us-east-1
    credentials: { access_key_id: AKIDEXAMPLE, secret_access_key: wJalrXUtnFEMI }
routes:
  - { prefix: /static, root: www/static, bucket: media, key_prefix: static/, access: public }
  - { prefix: /private, root: www/static, bucket: media, key_prefix: private/, access: private, ttl: 10m }
YAML
  (cd "$work/run" && exec "$1" run --config spillway.yaml >spillway.log 2>&1) &
  pid=$!
  for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return; sleep 0.05; done
  echo "spillway did not start" >&2; cat "$work/run/spillway.log" >&2; exit 1
}

rate() {  # port path expected-status [header]
  local status args=()
  [ -n "${4:-}" ] && args=(-H "$4")
  status=$(curl -s -o /dev/null -w '%{http_code}' "${args[@]}" "http://127.0.0.1:$1$2")
  [ "$status" = "$3" ] || { echo "expected $3 for $2, got $status" >&2; exit 1; }
  wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "${args[@]}" "http://127.0.0.1:$1$2" | awk '/Requests\/sec/ {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A results
read -r -a workloads <<< "${WORKLOADS:-hit 304 public presigned proxied}"
for round in $(seq "$ROUNDS"); do
  for which in base new; do
    bin=$base_bin; [ $which = new ] && bin=$new_bin
    port=$(free_port); start "$bin" "$port"
    etag=$(curl -s -D - -o /dev/null "http://127.0.0.1:$port/static/1k.bin" | awk 'tolower($1)=="etag:" {print $2}' | tr -d '\r')
    for w in "${workloads[@]}"; do
      case $w in
        hit) results[$which.hit]+="$(rate "$port" /static/1k.bin 200) " ;;
        304) results[$which.304]+="$(rate "$port" /static/1k.bin 304 "If-None-Match: $etag") " ;;
        public) results[$which.public]+="$(rate "$port" /static/missing.png 302) " ;;
        presigned) results[$which.presigned]+="$(rate "$port" /private/missing.pdf 302) " ;;
        proxied) results[$which.proxied]+="$(rate "$port" /app/page 200) " ;;
        *) echo "unknown workload $w" >&2; exit 1 ;;
      esac
    done
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "round $round $which done"
  done
done

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $WORKERS workers, wrk -t2 -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, medians; base $(git rev-parse --short "$BASE"), new $new_name"
  echo
  echo "| workload | base req/s | new req/s | new / base |"
  echo "|---|---:|---:|---:|"
  for w in "${workloads[@]}"; do
    b=$(echo "${results[base.$w]}" | tr ' ' '\n' | grep . | median)
    n=$(echo "${results[new.$w]}" | tr ' ' '\n' | grep . | median)
    echo "| $w | $b | $n | $(echo "$n / $b" | bc -l | xargs printf '%.2f') |"
  done
} > "$work/results.md"
cat "$work/results.md"
