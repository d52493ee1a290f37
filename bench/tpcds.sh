#!/usr/bin/env bash
# TPC-DS side by side: Ember (embedded and on a local cluster), DataFusion,
# DuckDB and PySpark on the same Parquet data and the same cores; writes
# bench/results/tpcds-sf<SF>-<date>.md with the raw records beside it.
#
#   bench/tpcds.sh [--scale-factor SF] [--runs N] [--threads N] [--executors N]
#                  [--engines LIST] [--peers LIST] [--data DIR]
#
# Defaults: SF 1, 1 run, 2 threads, 2 executors, every engine. The data is
# generated once per scale factor under ~/.cache/ember/tpcds-sf<SF> (or
# --data); the queries come from scripts/fetch-tpcds-queries. Every
# engine's answer to every query is compared with DuckDB's (numbers within a
# tolerance, peers/answers.py); the report marks each one that differs.
set -euo pipefail
cd "$(dirname "$0")/.."

sf=1; runs=1; threads=2; executors=2
engines=embedded,cluster,datafusion
peers=duckdb,pyspark
data=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --executors) executors=$2; shift 2 ;;
        --engines) engines=$2; shift 2 ;;
        --peers) peers=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
data=${data:-${HOME:-/tmp}/.cache/ember/tpcds-sf$sf}
. bench/common.sh
bench_work_dir

merge_records() {
    local out=$1; shift
    python3 -c 'import json, sys; print(json.dumps([r for f in sys.argv[1:] for r in json.load(open(f))], indent=1))' \
        "$@" > "$out"
}

queries=$(scripts/fetch-tpcds-queries)
bench_build
# One process per engine, so each one's peak memory is its own.
files=()
for engine in ${engines//,/ }; do
    "$target/release/ember-tpcds-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
        --threads "$threads" --executors "$executors" --engines "$engine" --query-dir "$queries" \
        --out "$work/ember-$engine.json" --answers "$work/answers"
    files+=("$work/ember-$engine.json")
done
merge_records "$work/ember.json" "${files[@]}"
venv=$(bench/peers/setup-venv)
"$venv/bin/python" bench/peers/tpcds_peers.py --data "$data" --queries "$queries" --engines "$peers" \
    --runs "$runs" --threads "$threads" --answers "$work/answers" --out "$work/peers.json"
"$venv/bin/python" bench/peers/answers.py --dir "$work/answers" --out "$work/comparison.json" || true
out="bench/results/tpcds-sf$sf-$(date +%F).md"
"$venv/bin/python" bench/peers/report.py --records "$work/ember.json" "$work/peers.json" --queries 99 \
    --comparison "$work/comparison.json" --out "$out" \
    --title "TPC-DS SF $sf, $threads cores, median of $runs run(s)"
cp "$work/ember.json" "${out%.md}-ember.json"
cp "$work/peers.json" "${out%.md}-peers.json"
cp "$work/comparison.json" "${out%.md}-comparison.json"
echo "wrote $out"
