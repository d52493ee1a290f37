#!/usr/bin/env bash
# Builds Ember's default base image, `ember-base:bookworm`, without pulling
# anything from a container registry: debootstrap lays out a minimal Debian
# 12 root file system from Debian's package archive and `docker import` turns
# it into an image.
#
# Usage: deploy/docker/build-base-image.sh [--force]
#
#   --force   rebuild even if the image already exists
#
# Environment:
#   EMBER_BASE_IMAGE   image name to create (default ember-base:bookworm)
#   DEBIAN_MIRROR      Debian archive to bootstrap from
#                      (default http://deb.debian.org/debian)
#
# Needs root (debootstrap creates device nodes and chroots); installs
# debootstrap from Debian's packages when it is missing.
set -euo pipefail

image="${EMBER_BASE_IMAGE:-ember-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
force=false
for arg in "$@"; do
    case "$arg" in
        --force) force=true ;;
        -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-base-image: unknown argument: $arg" >&2; exit 2 ;;
    esac
done

if ! $force && docker image inspect "$image" >/dev/null 2>&1; then
    echo "build-base-image: $image already exists (use --force to rebuild)"
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        exec sudo -n --preserve-env=EMBER_BASE_IMAGE,DEBIAN_MIRROR "$0" "$@"
    fi
    echo "build-base-image: debootstrap needs root; run as root or with sudo" >&2
    exit 1
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "build-base-image: installing debootstrap"
    apt-get install -y -qq debootstrap >/dev/null \
        || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
fi

rootfs="$(mktemp -d /tmp/ember-base-rootfs.XXXXXX)"
trap 'rm -rf "$rootfs"' EXIT

echo "build-base-image: bootstrapping Debian bookworm from $mirror"
# ca-certificates: TLS to S3. Health checks need only bash.
log="$rootfs.log"
debootstrap --variant=minbase --include=ca-certificates \
    bookworm "$rootfs" "$mirror" > "$log" 2>&1 \
    || { tail -20 "$log" >&2; rm -f "$log"; echo "build-base-image: debootstrap failed" >&2; exit 1; }
rm -f "$log"

# Keep the image small: no package lists, caches or documentation.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*

echo "build-base-image: importing as $image"
tar -C "$rootfs" -c . | docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    - "$image" >/dev/null
echo "build-base-image: built $image ($(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=iec))"
