#!/usr/bin/env bash
# TPC-H under memory limits: the 22 queries on Ember embedded and on a
# local cluster whose executors each get the limit (--memory), for every
# limit given, with time per query, peak resident memory per process and
# bytes spilled; every answer is compared with DuckDB's. Writes
# bench/results/memory-sf<SF>-<date>.md, its PNG chart and the raw records.
#
#   bench/memory.sh [--scale-factor SF] [--limits LIST] [--engines LIST]
#                   [--executors N] [--threads N] [--runs N] [--data DIR]
#
# Defaults: SF 10, limits 256MiB,512MiB,1GiB,default ("default" is each
# engine's own: a pool of half the machine's memory embedded,
# 60% of it per executor),
# engines embedded,cluster, 2 executors of one core each (2 threads), 1 run.
# The data is generated once per scale factor under
# ~/.cache/ember/tpch-sf<SF> (or --data). The script fails when a query
# fails under some limit or an answer differs from DuckDB's, after writing
# the report, which says which.
set -euo pipefail
cd "$(dirname "$0")/.."

sf=10; limits=256MiB,512MiB,1GiB,default; engines=embedded,cluster
executors=2; threads=2; runs=1; data=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --limits) limits=$2; shift 2 ;;
        --engines) engines=$2; shift 2 ;;
        --executors) executors=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
data=${data:-${HOME:-/tmp}/.cache/ember/tpch-sf$sf}
. bench/common.sh
bench_work_dir

bench_build
files=()
# One process per engine and limit, so each one's peak memory is its own.
for limit in ${limits//,/ }; do
    memory=()
    [ "$limit" = default ] || memory=(--memory "$limit")
    for engine in ${engines//,/ }; do
        out="$work/ember-$engine-$limit.json"
        "$target/release/ember-tpch-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
            --threads "$threads" --executors "$executors" --engines "$engine" ${memory[@]+"${memory[@]}"} \
            --out "$out" --answers "$work/answers"
        files+=("$out")
    done
done
python3 -c 'import json, sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=1))' \
    "${files[@]}" > "$work/ember.json"

venv=$(bench/peers/setup-venv)
"$venv/bin/python" bench/peers/tpch_peers.py --data "$data" --queries client/src/tpch/queries \
    --scale-factor "$sf" --threads "$threads" --answers "$work/answers" --engines duckdb --runs 1 \
    --out "$work/duckdb.json"
agree=0
"$venv/bin/python" bench/peers/answers.py --dir "$work/answers" --out "$work/comparison.json" \
    || agree=$?
out="bench/results/memory-sf$sf-$(date +%F).md"
complete=0
"$venv/bin/python" bench/peers/memory_report.py --records "$work/ember.json" \
    --comparison "$work/comparison.json" --out "$out" \
    --title "TPC-H SF $sf under memory limits, $threads cores, $executors executors" || complete=$?
cp "$work/ember.json" "${out%.md}.json"
echo "wrote $out"
if [ "$agree" -ne 0 ] || [ "$complete" -ne 0 ]; then
    echo "memory.sh: some queries failed or differ from DuckDB's (listed in the report)" >&2
    exit 1
fi
