#!/usr/bin/env bash
# Scan throughput of TPC-H `lineitem` from an S3-compatible server on
# 127.0.0.1 versus from local disk, embedded and on a local cluster, through
# the `ember` CLI. Prints a Markdown table.
#
#   bench/s3-scan.sh [--scale-factor SF] [--executors N] [--runs R] [--bin-dir DIR]
#
# Defaults: SF 1, 2 executors, 3 runs (the median is reported), binaries
# from target/release (`cargo build --release`). The S3 server is
# `ember-s3-test-server` (s3s-fs over a temporary directory, signatures
# checked), the same server the tests use. The data reaches it through
# Ember's own distributed writer (`COPY ... TO 's3://...'`), whose time is
# reported too.
#
# The scan reads four of lineitem's sixteen columns and aggregates them, so
# that the time is spent fetching and decoding Parquet, not in operators.
set -euo pipefail
cd "$(dirname "$0")/.."

sf=1; executors=2; runs=3; bin_dir=target/release
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --executors) executors=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for b in ember ember-scheduler ember-executor ember-s3-test-server; do
    [ -x "$bin_dir/$b" ] || { echo "missing $bin_dir/$b (cargo build --release)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

# The S3 server, and the AWS_* variables that point every process at it.
"$bin_dir/ember-s3-test-server" --bucket bench > "$work/s3.out" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "^export AWS_ALLOW_HTTP" "$work/s3.out" 2>/dev/null && break; sleep 0.1; done
eval "$(grep '^export ' "$work/s3.out")"

"$bin_dir/ember" datagen tpch --scale-factor "$sf" --parts 4 --output "$work/data" >/dev/null
local_bytes=$(du -sb "$work/data/lineitem" | cut -f1)

scan="SELECT count(*) AS n, sum(l_quantity) AS q, sum(l_extendedprice) AS p, max(l_shipdate) AS d FROM lineitem"

# Upload through Ember's distributed writer (embedded), and time it.
upload=$("$bin_dir/ember" sql --format csv --timing \
    -c "CREATE EXTERNAL TABLE lineitem_local STORED AS PARQUET LOCATION '$work/data/lineitem/'" \
    -c "COPY (SELECT * FROM lineitem_local) TO 's3://bench/lineitem/' STORED AS PARQUET" \
    2>&1 >/dev/null | awk '/^Time: / { sub("s", "", $2); print $2 }' | tail -n 1)

# Median of the scan's times (seconds) over $runs runs.
scan_median() {
    local location=$1; shift
    local script="$work/scan.sql"
    echo "CREATE EXTERNAL TABLE lineitem STORED AS PARQUET LOCATION '$location';" > "$script"
    for _ in $(seq 1 "$runs"); do echo "$scan;" >> "$script"; done
    "$bin_dir/ember" sql --format csv --timing "$@" -f "$script" 2>&1 >/dev/null \
        | awk '/^Time: / { sub("s", "", $2); print $2 }' | tail -n "$runs" | sort -n \
        | awk '{ t[NR] = $1 } END { print t[int((NR + 1) / 2)] }'
}

embedded_local=$(scan_median "$work/data/lineitem/")
embedded_s3=$(scan_median "s3://bench/lineitem/")

"$bin_dir/ember" cluster local --executors "$executors" --port 0 --state-dir "$work/cluster" \
    > "$work/cluster.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 1 120); do grep -q "Press Ctrl-C" "$work/cluster.out" 2>/dev/null && break; sleep 0.5; done
addr=$(sed -n 's/^Ember cluster running: scheduler at \([^,]*\),.*/\1/p' "$work/cluster.out")
# The cluster requires the token it generated.
export EMBER_TOKEN_FILE="$work/cluster/secrets/token"
[ -n "$addr" ] || { echo "the local cluster did not start" >&2; exit 1; }
cluster_local=$(scan_median "$work/data/lineitem/" --scheduler "$addr")
cluster_s3=$(scan_median "s3://bench/lineitem/" --scheduler "$addr")

rows=$("$bin_dir/ember" sql --format csv \
    -c "CREATE EXTERNAL TABLE l STORED AS PARQUET LOCATION '$work/data/lineitem/'" \
    -c "SELECT count(*) FROM l" | tail -n 1)
mib=$(awk -v b="$local_bytes" 'BEGIN { printf "%.1f", b / 1048576 }')

echo "TPC-H SF $sf lineitem: $rows rows, $mib MiB of Parquet in 4 files on local disk; median of $runs runs."
echo "Upload through Ember's writer (COPY to S3, embedded): ${upload}s."
echo "MiB/s is the whole table's Parquet size over the scan time; the scan itself fetches only the 4 columns it reads."
echo
echo "| source | mode | scan time (s) | rows/s (M) | table MiB/s |"
echo "| --- | --- | ---: | ---: | ---: |"
row() {
    awk -v src="$1" -v mode="$2" -v t="$3" -v r="$rows" -v m="$mib" \
        'BEGIN { printf "| %s | %s | %.3f | %.1f | %.0f |\n", src, mode, t, r / t / 1e6, m / t }'
}
row "local disk" embedded "$embedded_local"
row "S3 (127.0.0.1)" embedded "$embedded_s3"
row "local disk" "cluster, $executors executors" "$cluster_local"
row "S3 (127.0.0.1)" "cluster, $executors executors" "$cluster_s3"
