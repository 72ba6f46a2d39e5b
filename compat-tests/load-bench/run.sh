#!/usr/bin/env bash
# Ingest throughput per gateway CPU-second, every protocol side by side in one run.
#
#   bash compat-tests/load-bench/run.sh [path/to/tarn] [seconds per case]
#   ONLY=native bash compat-tests/load-bench/run.sh ...   # only the cases whose title matches
#   WARMUP=3 bash compat-tests/load-bench/run.sh ...      # seconds of load before the window
#
# The default warm-up (15 s) outlasts the first Delta commit (every 10 s): until then the
# gateway is still growing into its working set (the fresh rows of one commit interval),
# and the kernel zeroing those new pages was 10-15 % of the CPU of a window started at 3 s.
#
# For each case it starts a fresh `tarn serve` (embedded defaults: SQLite catalog, file://
# lake, WAL fsync before every acknowledgement), drives it with `tarn load` from the same
# machine, and prints `tarn load`'s report: records acknowledged in the window, the gateway's
# user+sys CPU seconds from /proc (during the window, and including the commits after it),
# records per gateway CPU-second, and what FlightSQL finds in the tables at the end (the run
# fails if an acknowledged record is missing). The last case adds ack-to-visible probes.
set -euo pipefail

tarn=${1:-${CARGO_TARGET_DIR:-$HOME/.cache/tarn/target}/release/tarn}
secs=${2:-20}
warmup=${WARMUP:-15}
work=$(mktemp -d /tmp/tarn-load-bench.XXXXXX)
pid=""
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$work"' EXIT

start() {
  rm -rf "$work/data"
  "$tarn" serve --data-dir "$work/data" --otlp-grpc-port 0 --otlp-http-port 0 \
    --native-port 0 --flightsql-port 0 --maintenance-interval-secs 0 \
    >"$work/serve.out" 2>"$work/serve.err" &
  pid=$!
  for _ in $(seq 600); do
    if grep -q "^tarn ready" "$work/serve.out"; then break; fi
    sleep 0.1
  done
  ready=$(grep "^tarn ready" "$work/serve.out")
  grpc=$(sed -E 's/.*otlp_grpc=([^ ]+).*/\1/' <<<"$ready")
  http=$(sed -E 's/.*otlp_http=([^ ]+).*/\1/' <<<"$ready")
  native=$(sed -E 's/.*native=([^ ]+).*/\1/' <<<"$ready")
  flight=$(sed -E 's/.*flightsql=([^ ]+).*/\1/' <<<"$ready")
}

stop() {
  kill -TERM "$pid"
  wait "$pid" || true
}

# case_ TITLE PORT ARGS...: PORT is grpc, http or native (known once the server is up).
case_() {
  local title=$1 port=$2
  shift 2
  if [[ -n "${ONLY:-}" && ! "$title" =~ $ONLY ]]; then return; fi
  start
  echo "### $title"
  "$tarn" load --pid "$pid" --flightsql "grpc://$flight" --duration-secs "$secs" \
    --warmup-secs "$warmup" --drain-secs 15 --target "${!port}" "$@" | sed 's/^/    /'
  stop
}

echo "tarn: $tarn ($("$tarn" --version))"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "date: $(date -u +%FT%TZ)"
case_ "OTLP/gRPC traces, 512 spans x 10 attributes" grpc --transport grpc --signal traces --concurrency 16
case_ "OTLP/HTTP traces, 512 spans x 10 attributes" http --transport http --signal traces --concurrency 16
case_ "OTLP/gRPC logs, 512 records x 10 attributes" grpc --transport grpc --signal logs --concurrency 16
case_ "OTLP/HTTP logs, 512 records x 10 attributes" http --transport http --signal logs --concurrency 16
case_ "native blocks of 10,000 mixed events" native --protocol native --concurrency 8
case_ "OTLP/gRPC traces at a quarter of the callers, then 200 ack-to-visible probes" \
  grpc --transport grpc --signal traces --concurrency 4 --visibility-probes 200
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
