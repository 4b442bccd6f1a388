#!/usr/bin/env bash
# The cost of signing redirects: a public 302 against S3-presigned and CloudFront-signed ones
# (RSA-SHA1 and ECDSA P-256 keys), all with `sign_window: 1m`, on one path and on 1,000 paths
# chosen at random (each signed once in its window, then copied). One spillway, wrk on
# loopback, alternating rounds, medians.
#
#   bash benches/cloudfront/run.sh        (installs wrk when missing; keys made with openssl)
#   ROUNDS=5 DURATION=5s THREADS=1 bash benches/cloudfront/run.sh
# Results: target/cloudfront-bench/results.md
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
work=$(pwd)/target/cloudfront-bench
rm -rf "$work" && mkdir -p "$work/www"
command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
cargo build --release --bin spillway 2>&1 | tail -1
openssl genrsa -out "$work/rsa.pem" 2048 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$work/ec.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)

bucket() {  # name [cloudfront key]
  echo "  $1:"
  echo "    bucket: media"
  echo "    region: us-east-1"
  echo "    credentials: { access_key_id: AKIDEXAMPLE, secret_access_key: wJalrXUtnFEMI }"
  echo "    public_url: \"https://d111111abcdef8.cloudfront.net/media\""
  if [ -n "${2:-}" ]; then
    echo "    cloudfront: { key_pair_id: K2JCJMDEHXQW5F, private_key: $2 }"
  fi
}
route() {  # prefix bucket access
  echo "  - { prefix: $1, root: www, bucket: $2, access: $3, ttl: 10m, sign_window: 1m }"
}
{
  echo "listen: \"127.0.0.1:$port\""
  echo "threads: ${WORKERS:-2}"
  echo "runtime_dir: run"
  echo "access_log: { format: off }"
  echo "buckets:"
  bucket s3
  bucket rsa "$work/rsa.pem"
  bucket ec "$work/ec.pem"
  echo "routes:"
  route /pub s3 public
  route /s3 s3 private
  route /rsa rsa private
  route /ec ec private
} > "$work/spillway.yaml"
target/release/spillway run --config "$work/spillway.yaml" >"$work/spillway.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 200); do (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

# Each answer checked first: the redirect a workload claims to measure.
check() {  # path pattern
  local location
  location=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' "http://127.0.0.1:$port$1")
  [[ "$location" =~ $2 ]] || { echo "$1: expected 302 matching $2, got $location" >&2; exit 1; }
}
check /pub/a.jpg '^302 https://d111111abcdef8.cloudfront.net/media/a.jpg$'
check /s3/a.jpg '^302 https://media.s3.us-east-1.amazonaws.com/a.jpg\?X-Amz-Algorithm=.*X-Amz-Signature='
check /rsa/a.jpg '^302 https://d111111abcdef8.cloudfront.net/media/a.jpg\?Expires=[0-9]+&Signature=.{344}&Key-Pair-Id='
check /ec/a.jpg '^302 https://d111111abcdef8.cloudfront.net/media/a.jpg\?Expires=[0-9]+&Signature=.{92,96}&Key-Pair-Id='

cat > "$work/many.lua" <<'LUA'
-- 1,000 paths below the prefix in the URL, one at random per request.
local prefix
init = function(args) prefix = args[1] end
request = function() return wrk.format(nil, prefix .. "/f" .. math.random(1000) .. ".jpg") end
LUA

rate() {  # prefix one|many
  local out
  if [ "$2" = one ]; then
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" "http://127.0.0.1:$port$1/a.jpg")
  else
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" -s "$work/many.lua" "http://127.0.0.1:$port" -- "$1")
  fi
  echo "$out" | awk '/Requests\/sec/ {print $2}'
}

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

declare -A results
for round in $(seq "$ROUNDS"); do
  for paths in one many; do
    for prefix in /pub /s3 /rsa /ec; do
      results[$prefix.$paths]+="$(rate "$prefix" "$paths") "
    done
  done
  echo "round $round done"
done

{
  echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, ${WORKERS:-2} workers, wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $ROUNDS alternating rounds, medians; \`sign_window: 1m\`, \`ttl: 10m\`"
  echo
  echo "| paths | public 302 req/s | S3-presigned | CloudFront RSA-SHA1 | CloudFront ECDSA P-256 |"
  echo "|---|---:|---:|---:|---:|"
  for paths in one many; do
    base=$(echo "${results[/pub.$paths]}" | tr ' ' '\n' | grep . | median)
    line="| $([ $paths = one ] && echo 'one path' || echo '1,000 paths at random') | $base"
    for prefix in /s3 /rsa /ec; do
      v=$(echo "${results[$prefix.$paths]}" | tr ' ' '\n' | grep . | median)
      line+=" | $v ($(echo "$v / $base" | bc -l | xargs printf '%.2f')×)"
    done
    echo "$line |"
  done
} > "$work/results.md"
cat "$work/results.md"
