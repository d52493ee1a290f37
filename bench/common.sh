# Shared by the benchmark scripts (sourced, not run): where the release
# binaries are, a work directory for the records, kept and named when the
# script fails, and the release build itself.
#
#   . "$(dirname "$0")/common.sh"
#   bench_work_dir          # sets $target and $work, and the EXIT trap
#   bench_build             # cargo build --release of the whole workspace

# Sets $target (the cargo target directory) and $work (a fresh directory
# for records), which is removed when the script succeeds and named on
# standard error when it fails.
bench_work_dir() {
    target=${CARGO_TARGET_DIR:-target}
    work=$(mktemp -d)
    # The records of a run that fails half-way are kept, and named.
    trap 'status=$?; if [ $status -ne 0 ]; then echo "$(basename "$0"): records so far are in $work" >&2; else rm -rf "$work"; fi' EXIT
}

# Builds Ember's binaries in release mode: the whole workspace, so that
# features stay unified with every other build.
bench_build() {
    cargo build --release --locked --workspace --bins
}
