#!/usr/bin/env bash
# Load benchmark of `caption serve` on loopback with wrk (Debian's package): POST /v1/captions of one
# bundled image at 1, 4, 16 and 64 concurrent connections, each for DURATION; prints a Markdown table
# (requests/s, p50/p95/p99 latency, errors by kind as wrk counts them (status: a non-2xx answer), the
# server's peak RSS so far) and the CPU.
#
#   scripts/bench-serve.sh [--duration 30s] [--image FILE] [-- SERVER OPTIONS...]
#   scripts/bench-serve.sh --duration 5s -- --threads 2 --max-batch 32
set -euo pipefail
cd "$(dirname "$0")/.."
duration=30s
image=datasets/shapes/examples/000001.png
while [ $# -gt 0 ]; do
  case "$1" in
    --duration) duration=$2; shift 2 ;;
    --image) image=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "usage: scripts/bench-serve.sh [--duration 30s] [--image FILE] [-- SERVER OPTIONS...]" >&2; exit 64 ;;
  esac
done
command -v wrk >/dev/null || { echo "bench-serve: wrk is missing (apt-get install -y wrk)" >&2; exit 1; }
swift build -c release --product caption-serve 2>&1 | tail -1 >&2

log=$(mktemp)
script=$(mktemp --suffix .lua)
.build/release/caption-serve --port 0 "$@" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -f "$log" "$script"' EXIT
for _ in $(seq 100); do grep -q 'listening on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://[0-9.:]*' "$log" | head -1)
[ -n "$url" ] || { echo "bench-serve: the server did not start: $(cat "$log")" >&2; exit 1; }

cat >"$script" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
local file = assert(io.open(os.getenv("BENCH_IMAGE"), "rb"))
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  local kinds = {}
  for _, kind in ipairs({"connect", "read", "write", "status", "timeout"}) do
    if e[kind] > 0 then kinds[#kinds + 1] = e[kind] .. "_" .. kind end
  end
  io.write(string.format("RESULT %.1f %.2f %.2f %.2f %s\n", summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    #kinds == 0 and "0" or table.concat(kinds, ",")))
end
LUA

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')
avx512=$(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)
echo "CPU: $cpu ($(nproc) cores, avx512f: $avx512); $duration per level; server options: ${*:-defaults}"
echo
echo "| clients | requests/s | p50 ms | p95 ms | p99 ms | errors | peak RSS MB |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
for clients in 1 4 16 64; do
  # wrk leaves its last requests unanswered when it stops: let the server finish them first
  for _ in $(seq 100); do
    curl -s "$url/metrics" | grep -q '^caption_queue_depth 0' && break
    sleep 0.1
  done
  threads=$((clients < 2 ? 1 : 2))
  result=$(BENCH_IMAGE="$image" wrk -t "$threads" -c "$clients" -d "$duration" --timeout 10s -s "$script" \
    "$url/v1/captions" | grep '^RESULT')
  read -r _ rate p50 p95 p99 errors <<<"$result"
  peak=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$server/status")
  echo "| $clients | $rate | $p50 | $p95 | $p99 | $errors | $peak |"
done
