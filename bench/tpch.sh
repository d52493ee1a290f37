#!/usr/bin/env bash
# TPC-H side by side: Ember (embedded and on a local cluster), DataFusion,
# DuckDB, Polars, DataFusion-Python, PySpark and Dask on the same Parquet
# data and the same cores; writes bench/results/tpch-sf<SF>-<date>.md and
# the PNG chart beside it.
#
#   bench/tpch.sh [--scale-factor SF] [--runs N] [--spark-runs N] [--dask-runs N]
#                 [--dask-timeout S] [--threads N] [--executors N] [--engines LIST]
#                 [--peers LIST] [--data DIR]
#
# Defaults: SF 1, 3 runs, 2 threads, 2 executors, every engine. PySpark
# and Dask, ten and fifty times slower than the others here, get runs of
# their own (--spark-runs, --dask-runs; by default --runs), and with
# --dask-timeout each Dask query that takes longer is stopped and
# reported as skipped. The data is
# generated once per scale factor under ~/.cache/ember/tpch-sf<SF> (or
# --data). Ember's binaries are built in release mode first.
#
# Every engine's answer to every query is compared with DuckDB's (numbers
# within a tolerance, peers/answers.py); the report marks each one that
# differs, and the script then fails, naming them.
set -euo pipefail
cd "$(dirname "$0")/.."

sf=1; runs=3; spark_runs=; dask_runs=; dask_timeout=; threads=2; executors=2
engines=embedded,cluster,datafusion
peers=duckdb,polars,datafusion,pyspark,dask
data=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --spark-runs) spark_runs=$2; shift 2 ;;
        --dask-runs) dask_runs=$2; shift 2 ;;
        --dask-timeout) dask_timeout=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --executors) executors=$2; shift 2 ;;
        --engines) engines=$2; shift 2 ;;
        --peers) peers=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
data=${data:-${HOME:-/tmp}/.cache/ember/tpch-sf$sf}
. bench/common.sh
bench_work_dir

# merge_records OUT FILE...: the records of every FILE, in order, as one JSON list in OUT.
merge_records() {
    local out=$1; shift
    python3 -c 'import json, sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=1))' \
        "$@" > "$out"
}

bench_build
# One process per engine, so each one's peak memory is its own.
for engine in ${engines//,/ }; do
    "$target/release/ember-tpch-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
        --threads "$threads" --executors "$executors" --engines "$engine" \
        --out "$work/ember-$engine.json" --answers "$work/answers"
done
ember_files=()
for engine in ${engines//,/ }; do ember_files+=("$work/ember-$engine.json"); done
merge_records "$work/ember.json" "${ember_files[@]}"
venv=$(bench/peers/setup-venv)
peer_runs() {
    "$venv/bin/python" bench/peers/tpch_peers.py --data "$data" --queries client/src/tpch/queries --scale-factor "$sf" \
        --threads "$threads" --answers "$work/answers" "$@"
}
peer_files=()
others=$(echo ",$peers," | sed 's/,dask,/,/g; s/,pyspark,/,/g; s/^,//; s/,$//')
if [ -n "$others" ]; then
    peer_runs --engines "$others" --runs "$runs" --out "$work/peers-others.json"
    peer_files+=("$work/peers-others.json")
fi
if [[ ",$peers," == *,pyspark,* ]]; then
    peer_runs --engines pyspark --runs "${spark_runs:-$runs}" --out "$work/peers-pyspark.json"
    peer_files+=("$work/peers-pyspark.json")
fi
if [[ ",$peers," == *,dask,* ]]; then
    peer_runs --engines dask --runs "${dask_runs:-$runs}" ${dask_timeout:+--query-timeout "$dask_timeout"} \
        --out "$work/peers-dask.json"
    peer_files+=("$work/peers-dask.json")
fi
merge_records "$work/peers.json" ${peer_files[@]+"${peer_files[@]}"}
agree=0
"$venv/bin/python" bench/peers/answers.py --dir "$work/answers" --out "$work/comparison.json" \
    || agree=$?
out="bench/results/tpch-sf$sf-$(date +%F).md"
"$venv/bin/python" bench/peers/report.py --records "$work/ember.json" "$work/peers.json" \
    --comparison "$work/comparison.json" \
    --out "$out" --title "TPC-H SF $sf, $threads cores, median of $runs runs${spark_runs:+ (PySpark: $spark_runs)}${dask_runs:+ (Dask: $dask_runs${dask_timeout:+, at most ${dask_timeout} s a query})}"
cp "$work/ember.json" "${out%.md}-ember.json"
cp "$work/peers.json" "${out%.md}-peers.json"
echo "wrote $out"
if [ "$agree" -ne 0 ]; then
    echo "tpch.sh: some answers differ from DuckDB's (listed above); the report marks them with ≠" >&2
    exit 1
fi
