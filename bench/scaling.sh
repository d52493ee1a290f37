#!/usr/bin/env bash
# How Ember's TPC-H time and peak memory grow with the data and with the
# number of executors: the 22 queries embedded and on local clusters of
# each size, at each scale factor, on the same cores. Writes
# bench/results/tpch-scaling-<date>.md and the raw records beside it.
#
#   bench/scaling.sh [--scale-factors 1,3,10] [--executors 1,2,4] [--runs N] [--threads N]
#                    [--previous RAW.json]
#
# Data is generated once per scale factor under ~/.cache/ember/tpch-sf<SF>.
# --previous adds an earlier run's raw records (its other scale factors) to
# the report, so one scale factor can be run alone.
set -euo pipefail
cd "$(dirname "$0")/.."

scale_factors=1,3,10; executor_counts=1,2,4; runs=3; threads=2; previous=()
while [ $# -gt 0 ]; do
    case "$1" in
        --scale-factors) scale_factors=$2; shift 2 ;;
        --executors) executor_counts=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --previous) previous+=("$2"); shift 2 ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
target=${CARGO_TARGET_DIR:-target}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --locked --workspace --bins
for sf in ${scale_factors//,/ }; do
    data="${HOME:-/tmp}/.cache/ember/tpch-sf$sf"
    "$target/release/ember-tpch-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
        --threads "$threads" --engines embedded --out "$work/sf$sf-embedded.json"
    for n in ${executor_counts//,/ }; do
        "$target/release/ember-tpch-bench" --data "$data" --scale-factor "$sf" --runs "$runs" \
            --threads "$threads" --executors "$n" --engines cluster \
            --out "$work/sf$sf-cluster-$n.json"
    done
done
out="bench/results/tpch-scaling-$(date +%F)"
python3 bench/peers/scaling_report.py --records "${previous[@]}" "$work"/sf*.json --threads "$threads" \
    --runs "$runs" --out "$out.md" --raw "$out.json"
echo "wrote $out.md"
