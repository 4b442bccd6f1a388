#!/usr/bin/env bash
# TLS throughput, side by side with nginx's TLS listener (http2 on, open_file_cache, the same
# certificate, document root and worker count): a 1 KiB file over HTTP/2 and over HTTP/1.1,
# measured with h2load (nghttp2), at 1 and 2 workers. Every response is checked to be a 200
# of the file's size.
#
#   bash benches/tls/run.sh      (as root on Debian: installs nginx-light and nghttp2-client)
#   REQUESTS=50000 CLIENTS=32 STREAMS=10 bash benches/tls/run.sh
# Results: target/tls-bench/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

REQUESTS=${REQUESTS:-100000}
CLIENTS=${CLIENTS:-32}
STREAMS=${STREAMS:-10}
ROUNDS=${ROUNDS:-3}
work=$(pwd)/target/tls-bench
rm -rf "$work" && mkdir -p "$work/www/static" "$work/nginx"

if ! command -v nginx >/dev/null 2>&1 || ! command -v h2load >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq nginx-light nghttp2-client >/dev/null
fi
cargo build --release --bin spillway 2>&1 | tail -1
spillway=$(pwd)/target/release/spillway

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -keyout "$work/key.pem" -out "$work/cert.pem" -subj "/CN=localhost" \
  -addext "subjectAltName=DNS:localhost" 2>/dev/null
head -c 1024 /dev/urandom > "$work/www/static/1k.bin"
chmod -R a+rX "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_spillway() {  # workers port
  cat > "$work/spillway.yaml" <<YAML
listen:
  - address: "127.0.0.1:$2"
    tls: { cert: cert.pem, key: key.pem }
threads: $1
access_log:
  format: off            # as nginx's access_log off below
routes:
  - prefix: /static
    root: www/static
runtime_dir: run
YAML
  "$spillway" run --config "$work/spillway.yaml" >"$work/spillway.log" 2>&1 &
  pid=$!
}

start_nginx() {  # workers port
  cat > "$work/nginx/nginx.conf" <<CONF
worker_processes $1;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  open_file_cache max=10000 inactive=60s;
  open_file_cache_valid 60s;
  open_file_cache_errors on;
  ssl_protocols TLSv1.2 TLSv1.3;
  ssl_session_cache shared:SSL:10m;
  server {
    listen 127.0.0.1:$2 ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work/www;
  }
}
CONF
  nginx -c "$work/nginx/nginx.conf" -g 'daemon off;' &
  pid=$!
}

wait_port() { for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# One h2load run; prints requests per second, after checking that every answer was a 2xx and
# that the body bytes add up to the file's size times the requests.
load() {  # port protocol(h2|h1)
  local flags=(-n "$REQUESTS" -c "$CLIENTS" -m "$STREAMS" -t 1)
  [ "$2" = h1 ] && flags+=(--h1)
  local out ok
  out=$(h2load "${flags[@]}" "https://localhost:$1/static/1k.bin" 2>&1)
  ok=$(echo "$out" | awk '/status codes:/ {print $3}')
  if [ "$ok" != "$REQUESTS" ]; then echo "$out" >&2; echo "not every answer was a 2xx" >&2; exit 1; fi
  # "traffic: ... 97.66MB (102400000) data"
  if ! echo "$out" | grep -q "($((REQUESTS * 1024))) data"; then
    echo "$out" >&2; echo "the bodies are not the 1 KiB file" >&2; exit 1
  fi
  echo "$out" | awk '/finished in/ {gsub(",", "", $4); print $4}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, h2load -n $REQUESTS -c $CLIENTS -m $STREAMS -t 1, $ROUNDS alternating rounds, medians of req/s"
  echo
  echo "| workers | protocol | spillway req/s | nginx req/s | ratio |"
  echo "|---:|---|---:|---:|---:|"
} > "$work/results.md"

for workers in 1 2; do
  for proto in h2 h1; do
    sp=(); ng=()
    for _ in $(seq "$ROUNDS"); do
      port=$(free_port); start_spillway "$workers" "$port"; wait_port "$port"
      sp+=("$(load "$port" "$proto")"); kill "$pid"; wait "$pid" 2>/dev/null || true
      port=$(free_port); start_nginx "$workers" "$port"; wait_port "$port"
      ng+=("$(load "$port" "$proto")"); kill -QUIT "$pid"; wait "$pid" 2>/dev/null || true
    done
    s=$(printf '%s\n' "${sp[@]}" | median); n=$(printf '%s\n' "${ng[@]}" | median)
    echo "workers $workers $proto: spillway ${sp[*]} / nginx ${ng[*]}"
    printf '| %d | %s | %.0f | %.0f | %.2f |\n' "$workers" "$( [ "$proto" = h2 ] && echo HTTP/2 || echo HTTP/1.1)" "$s" "$n" "$(echo "$s / $n" | bc -l)" >> "$work/results.md"
  done
done
cat "$work/results.md"
