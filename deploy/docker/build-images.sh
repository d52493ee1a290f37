#!/usr/bin/env bash
# Builds Ember's images from this workspace:
#
#   ember-scheduler   ember-executor   ember-cli   ember-s3-test-server
#
# The binaries are built on this machine with cargo and copied into a
# glibc-compatible Debian 12 base image (deploy/docker/Dockerfile), so no
# Rust toolchain is needed inside Docker and nothing is compiled twice.
#
# Usage: deploy/docker/build-images.sh [--debug] [--skip-build]
#
#   --debug        use the dev profile (faster to build; what CI tests)
#   --skip-build   use the binaries already in the target directory
#
# Environment:
#   EMBER_IMAGE_TAG    tag for the images (default: latest)
#   EMBER_BASE_IMAGE   base image (default: ember-base:bookworm, built
#                      locally by build-base-image.sh when missing; any
#                      Debian 12 image such as debian:bookworm-slim works)
#   CARGO_TARGET_DIR   where cargo builds (default: target/)
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=release
build=true
for arg in "$@"; do
    case "$arg" in
        --debug) profile=debug ;;
        --skip-build) build=false ;;
        -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-images: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

tag="${EMBER_IMAGE_TAG:-latest}"
base="${EMBER_BASE_IMAGE:-ember-base:bookworm}"
target_dir="${CARGO_TARGET_DIR:-target}"
binaries=(ember ember-scheduler ember-executor ember-s3-test-server)

if ! docker info >/dev/null 2>&1; then
    echo "build-images: no Docker engine answers (is the daemon running?)" >&2
    exit 1
fi

if [ "$base" = "ember-base:bookworm" ] && ! docker image inspect "$base" >/dev/null 2>&1; then
    deploy/docker/build-base-image.sh
fi

if $build; then
    echo "build-images: cargo build ($profile)"
    if [ "$profile" = release ]; then
        cargo build --workspace --bins --locked --release
    else
        cargo build --workspace --bins --locked
    fi
fi

context="$(mktemp -d /tmp/ember-image-context.XXXXXX)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/bin"
cp deploy/docker/Dockerfile deploy/docker/http-probe "$context/"
for binary in "${binaries[@]}"; do
    source="$target_dir/$profile/$binary"
    if [ ! -x "$source" ]; then
        echo "build-images: $source is missing (build it, or drop --skip-build)" >&2
        exit 1
    fi
    cp "$source" "$context/bin/"
    # Line tables are for debugging on the host; images stay small.
    strip --strip-debug "$context/bin/$binary" 2>/dev/null || true
done

build_image() {
    local stage="$1" image="$2"
    echo "build-images: $image:$tag (from $base)"
    # The classic builder: it needs no buildx plugin, and the Dockerfile
    # uses nothing BuildKit-only. Its output is shown only on failure.
    if ! DOCKER_BUILDKIT=0 docker build \
        --build-arg "BASE_IMAGE=$base" \
        --target "$stage" \
        --tag "$image:$tag" \
        "$context" > "$context/build.log" 2>&1; then
        grep -v -e DEPRECATED -e 'BuildKit is currently disabled' -e 'environment-variable' \
            "$context/build.log" | tail -30 >&2
        echo "build-images: building $image failed" >&2
        exit 1
    fi
}
build_image scheduler ember-scheduler
build_image executor ember-executor
build_image cli ember-cli
build_image s3-test-server ember-s3-test-server
echo "build-images: done; start a cluster with: docker-compose -f deploy/docker-compose.yml up -d"
