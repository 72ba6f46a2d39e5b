#!/bin/sh
# Loads the fixtures into a running Tarn over OTLP/HTTP (reads are done later, Tarn stopped).
#
# usage: load.sh OTLP_HTTP_ADDR [COMMITS]
#   OTLP_HTTP_ADDR  host:port from the `tarn ready otlp_http=...` line
#   COMMITS         extra commits to make (default 0): each posts traces.json with a new span
#                   id and waits 1.2 s, so with --flush-interval-secs 1 each is one Delta
#                   commit; 55 or more make Tarn write a checkpoint (checkpointInterval 50)
# fixtures/traces-extreme.json (times at 0, u64 max, past 2262) is not loaded: post it into
# a data dir of its own.
set -eu
addr=$1
commits=${2:-0}
dir=$(dirname "$0")/fixtures
post() { # path content-type file
    code=$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Content-Type: $2" --data-binary "@$3" "http://$addr$1")
    [ "$code" = 200 ] || { echo "POST $1 $3: HTTP $code" >&2; exit 1; }
}
post /v1/traces application/json "$dir/traces.json"
post /v1/logs application/json "$dir/logs.json"
post /v1/metrics application/json "$dir/metrics.json"
post /v1/metrics application/x-protobuf "$dir/metrics-nan.pb"
tmp=$(mktemp)
i=0
while [ "$i" -lt "$commits" ]; do
    i=$((i + 1))
    sed "s/1112131415161718/$(printf 'c0ffee%010x' "$i")/; s/\"edge\"/\"edge-loop\"/" "$dir/traces.json" > "$tmp"
    post /v1/traces application/json "$tmp"
    sleep 1.2
done
rm -f "$tmp"
