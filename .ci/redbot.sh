#!/usr/bin/env bash
# REDbot (HTTP lint, https://redbot.org) against a file served by spillway, a 304, and both
# kinds of redirect. Fails on any BAD note. Expects target/debug/spillway (built by cargo test).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redbot >/dev/null 2>&1; then
  pip install -q redbot >/dev/null 2>&1 || true
fi
if ! command -v redbot >/dev/null 2>&1; then
  echo "redbot: could not be installed from PyPI; REDbot check SKIPPED"
  exit 0
fi

dir=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
mkdir -p "$dir/www"
head -c 100000 /dev/urandom > "$dir/www/data.bin"
printf 'body { color: #333; }\n%.0s' {1..2000} > "$dir/www/site.css"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$dir/proxy.yaml" <<YAML
listen: "127.0.0.1:$port"
threads: 1
buckets:
  media:
    bucket: media
    region: us-east-1
    endpoint: "http://127.0.0.1:9"
    credentials: { access_key_id: "DEMO", secret_access_key: "DEMO" }
routes:
  - prefix: /files
    root: www
    bucket: media
    cache_control: "public, max-age=3600"
    rules:
      - { match: "public/**", access: public }
YAML
RUST_LOG=warn target/debug/spillway run --config "$dir/proxy.yaml" &
pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1 # polling for the port, not synchronising on a guess
done

bad=0
for path in /files/data.bin /files/site.css /files/public/missing.png /files/private/missing.pdf; do
  url="http://127.0.0.1:$port$path"
  notes=$(redbot -o har "$url" | python3 -c '
import json, sys
for entry in json.load(sys.stdin)["log"]["entries"]:
    for note in entry.get("_red_messages", []):
        print(note.get("level"), note.get("summary"))
')
  echo "REDbot $path"
  echo "$notes" | sed 's/^/  /'
  if echo "$notes" | grep -q '^BAD'; then bad=1; fi
done
if [ "$bad" -ne 0 ]; then
  echo "REDbot found BAD notes"
  exit 1
fi
echo "REDbot: no BAD notes"
