#!/usr/bin/env bash
# Instructions per request, counted by valgrind's callgrind (repeatable where wall-clock runs on
# a shared VM move by ±10 %): each binary serves N keep-alive GETs of a 1 KiB file on one worker,
# and again none; the difference over N is the cost of one request.
#
#   bash benches/ab/run.sh 5461be9 >/dev/null   (builds target/ab/spillway-5461be9), then
#   bash benches/ab/instructions.sh target/ab/spillway-5461be9 target/release/spillway [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=${3:-4000}
work=$(pwd)/target/ab/instructions
rm -rf "$work" && mkdir -p "$work/www"
head -c 1024 /dev/urandom > "$work/www/1k.bin"
command -v valgrind >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

count() {  # binary requests -> total instructions
  local port pid out
  port=$(free_port)
  out=$work/callgrind.$RANDOM
  cat > "$work/spillway.yaml" <<YAML
listen: "127.0.0.1:$port"
threads: 1
runtime_dir: run
shutdown: { grace_period: 0s, timeout: 1s }
access_log: { format: off }
buckets:
  media: { bucket: media, region: us-east-1, credentials: { access_key_id: AK, secret_access_key: SK } }
routes:
  - { prefix: /static, root: www, bucket: media, access: public }
YAML
  (cd "$work" && exec valgrind --tool=callgrind --callgrind-out-file="$out" "$1" run --config spillway.yaml >/dev/null 2>&1) &
  pid=$!
  for _ in $(seq 600); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.1; done
  python3 - "$port" "$2" <<'PY'
import socket, sys
port, n = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
buf = b""
for _ in range(n):
    s.sendall(b"GET /static/1k.bin HTTP/1.1\r\nHost: bench\r\n\r\n")
    while True:
        end = buf.find(b"\r\n\r\n")
        if end >= 0 and len(buf) >= end + 4 + 1024:
            buf = buf[end + 4 + 1024:]
            break
        chunk = s.recv(65536)
        if not chunk:
            sys.exit("the server closed the connection")
        buf += chunk
PY
  kill -TERM "$pid"; wait "$pid" || true
  awk '/^summary:/ {print $2}' "$out"
}

for bin in "$(realpath "$1")" "$(realpath "$2")"; do
  idle=$(count "$bin" 0)
  busy=$(count "$bin" "$N")
  echo "$bin: $(( (busy - idle) / N )) instructions per 1 KiB file hit ($N requests; $busy - $idle)"
done
