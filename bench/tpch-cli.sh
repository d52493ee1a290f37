#!/usr/bin/env bash
# Times the 22 TPC-H queries through the `ember` CLI, embedded and on a local
# cluster (one scheduler, N executors), and prints a Markdown table.
#
#   bench/tpch-cli.sh [--scale-factor SF] [--executors N] [--bin-dir DIR]
#
# Defaults: SF 0.01, 2 executors, binaries from target/release (build them
# with `cargo build --release`). Each query's time is what `ember sql --timing`
# reports: planning, execution and fetching the result, in one client process
# that first registers the tables. Results are not checked here; the tests
# under tests/ check them.
set -euo pipefail
cd "$(dirname "$0")/.."

sf=0.01; executors=2; bin_dir=target/release
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --executors) executors=$2; shift 2 ;;
        --bin-dir) bin_dir=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
for b in ember ember-scheduler ember-executor; do
    [ -x "$bin_dir/$b" ] || { echo "missing $bin_dir/$b (cargo build --release)" >&2; exit 1; }
done

work=$(mktemp -d)
cluster_pid=
cleanup() {
    [ -n "$cluster_pid" ] && kill -INT "$cluster_pid" 2>/dev/null && wait "$cluster_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

"$bin_dir/ember" datagen tpch --scale-factor "$sf" --parts 2 --output "$work/data" >/dev/null
script="$work/tpch.sql"
for t in region nation supplier customer part partsupp orders lineitem; do
    echo "CREATE EXTERNAL TABLE $t STORED AS PARQUET LOCATION '$work/data/$t/';" >> "$script"
done
for n in $(seq 1 22); do cat "client/src/tpch/queries/q$n.sql" >> "$script"; done

# Prints the 22 query times (seconds), one per line.
times() {
    "$bin_dir/ember" sql --format csv --timing "$@" -f "$script" 2>&1 >/dev/null \
        | awk '/^Time: / { sub("s", "", $2); print $2 }' | tail -n 22
}

times > "$work/embedded.txt"
"$bin_dir/ember" cluster local --executors "$executors" --port 0 --state-dir "$work/cluster" \
    > "$work/cluster.out" 2>/dev/null &
cluster_pid=$!
for _ in $(seq 1 120); do grep -q "Press Ctrl-C" "$work/cluster.out" 2>/dev/null && break; sleep 0.5; done
addr=$(sed -n 's/^Ember cluster running: scheduler at \([^,]*\),.*/\1/p' "$work/cluster.out")
# The cluster requires the token it generated.
export EMBER_TOKEN_FILE="$work/cluster/secrets/token"
[ -n "$addr" ] || { echo "the local cluster did not start" >&2; exit 1; }
times --scheduler "$addr" > "$work/cluster.txt"

echo "| query | embedded (s) | cluster, $executors executors (s) |"
echo "| --- | ---: | ---: |"
paste "$work/embedded.txt" "$work/cluster.txt" | awk '{ printf "| q%d | %.3f | %.3f |\n", NR, $1, $2; e += $1; c += $2 }
    END { printf "| **total** | **%.3f** | **%.3f** |\n", e, c }'
