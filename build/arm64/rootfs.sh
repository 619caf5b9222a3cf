#!/usr/bin/env bash
# An arm64 Debian 12 root, made by `debootstrap --arch=arm64` under qemu-user (build/arm64/qemu.sh),
# for what must run on arm64: pip and PyInstaller of `make binary ARCH=aarch64`, and the smoke
# test (tests/arm64/). binutils: PyInstaller strips what it bundles; nginx-light and python3: what
# an image running `smc serve` has.
#
#   bash build/arm64/rootfs.sh                      smc-arm64-root:<key> (the packages above)
#   bash build/arm64/rootfs.sh PACKAGES TAG         e.g. nginx-light smc-base:arm64 (build/images.sh)
#
# Output: $CACHE_DIR/rootfs-arm64-bookworm-<key>.tar (key: suite, packages, ROOT_VERSION), loaded
# into Docker as an image whose architecture is arm64, labelled with the key (reloaded only when the
# key changes). Prints the image's name.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
SUITE=bookworm
PACKAGES=${1:-binutils,nginx-light,python3}
# The key: what the root is made from (bump ROOT_VERSION when the way of making it changes).
ROOT_VERSION=1
KEY=$(echo "arm64 $SUITE $PACKAGES minbase $ROOT_VERSION" | sha256sum | cut -c1-12)
TARBALL=$CACHE_DIR/rootfs-arm64-$SUITE-$KEY.tar
IMAGE=${2:-smc-arm64-root:$KEY}
log() { echo "arm64-rootfs: $*" >&2; }

bash "$HERE/qemu.sh"
if [[ $(docker image inspect -f '{{ index .Config.Labels "smc.rootfs.key" }}' "$IMAGE" 2>/dev/null) == "$KEY" ]]; then
    echo "$IMAGE"
    exit 0
fi
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.arm64-rootfs-$KEY.lock"
flock 9
if [[ ! -f $TARBALL ]]; then
    command -v debootstrap >/dev/null || { log "debootstrap missing (apt-get install debootstrap)"; exit 1; }
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    [[ -n $uri ]] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    [[ -n $uri ]] || { log "no Debian mirror found in /etc/apt sources"; exit 1; }
    rootfs=$(mktemp -d /var/tmp/smc-arm64-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    log "debootstrap --arch=arm64 $SUITE (emulated second stage: minutes)"
    if ! debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$uri" >"$rootfs.log" 2>&1; then
        log "debootstrap of $SUITE (arm64) from $uri failed:"
        tail -n 20 "$rootfs.log" >&2
        [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi
# An image whose config says arm64 (build/arm64/load_image.py says why not `docker import`).
python3 "$HERE/load_image.py" "$TARBALL" arm64 "$IMAGE" "smc.rootfs.key=$KEY" | docker load >/dev/null
log "imported $IMAGE ($(du -h "$TARBALL" | cut -f1) rootfs)"
echo "$IMAGE"
