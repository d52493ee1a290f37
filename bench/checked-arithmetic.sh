#!/usr/bin/env bash
# What checked arithmetic costs: the 22 TPC-H queries on Ember embedded
# with `ember.checked_arithmetic` on (the default) and off, side by side in
# one process: every run of every query is made once with each setting in
# turn (ember-tpch-bench --alternate), so drift between processes or over
# time does not blur the ratio. Writes bench/results/checked-arithmetic-sf<SF>-<date>.md and the
# raw records beside it. Fails when the two settings answer any query
# differently (TPC-H overflows nowhere, so they must agree).
#
#   bench/checked-arithmetic.sh [--scale-factor SF] [--runs N] [--threads N]
#                               [--data DIR]
#
# Defaults: SF 10, 5 runs per query and setting, 2 threads. The data is generated once per scale factor under
# ~/.cache/ember/tpch-sf<SF> (or --data).
set -euo pipefail
cd "$(dirname "$0")/.."

sf=10; runs=5; threads=2; data=
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factor) sf=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --data) data=$2; shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
data=${data:-${HOME:-/tmp}/.cache/ember/tpch-sf$sf}
. bench/common.sh
bench_work_dir

bench_build
"$target/release/ember-tpch-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
    --threads "$threads" --engines embedded --alternate ember.checked_arithmetic=true,false \
    --out "$work/records.json"
out="bench/results/checked-arithmetic-sf$sf-$(date +%F).md"
python3 bench/peers/checked_report.py --records "$work/records.json" --out "$out" --runs "$runs" \
    --title "Checked arithmetic on TPC-H SF $sf, Ember embedded, $threads threads"
echo "wrote $out"
