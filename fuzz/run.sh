#!/usr/bin/env bash
# The long differential fuzzing run: builds ember-fuzz and the cluster's
# binaries, installs DuckDB into the benchmark venv (from PyPI, once), runs
# the generated queries on Ember embedded, on a local 2-executor cluster and
# on DuckDB, and writes fuzz/results/fuzz-<queries>-seed<seed>-<date>.md.
#
#   fuzz/run.sh                          # 10,000 queries, seed 1, release build
#   fuzz/run.sh --queries 500 --seed 7 --profile dev
#
# Exits with status 1 when any answer differs (the report lists them).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."

queries=10000
seed=1
profile=release
scale_factor=0.002
while [ $# -gt 0 ]; do
    case "$1" in
        --queries) queries="$2"; shift 2 ;;
        --seed) seed="$2"; shift 2 ;;
        --profile) profile="$2"; shift 2 ;;
        --scale-factor) scale_factor="$2"; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
done

venv="$(bench/peers/setup-venv duckdb)"
cargo build --workspace --bins --locked --profile "$profile"
target="${CARGO_TARGET_DIR:-target}"
dir="$profile"
[ "$profile" = dev ] && dir=debug
machine="$(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), $(uname -sm), $profile build"
out="fuzz/results/fuzz-$queries-seed$seed-$(date +%F).md"
"$target/$dir/ember-fuzz" --queries "$queries" --seed "$seed" --scale-factor "$scale_factor" \
    --python "$venv/bin/python" --machine "$machine" --out "$out"
echo "run.sh: wrote $out"
