#!/usr/bin/env bash
# Build the base image `smc-base:latest` without a registry: debootstrap a Debian bookworm minbase
# rootfs with nginx-light (and nothing Python), then `docker import` it.
# Cached: the rootfs tarball under ~/.cache/smc keyed on this script's content, and the image
# carries the key as a label, so nothing is rebuilt when nothing changed.
set -euo pipefail

SUITE=bookworm
PACKAGES=nginx-light
TAG=${SMC_BASE_TAG:-smc-base:latest}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
KEY=$(sha256sum "$0" | cut -c1-12)
TARBALL=$CACHE_DIR/rootfs-$SUITE-$KEY.tar

have_key=$(docker image inspect -f '{{ index .Config.Labels "smc.rootfs.key" }}' "$TAG" 2>/dev/null || true)
if [[ "$have_key" == "$KEY" ]]; then
    echo "base-image: $TAG is current (key $KEY)"
    exit 0
fi

mirror() {
    # The machine's own Debian mirror, read from its apt sources at run time.
    local uri
    uri=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    [[ -n "$uri" ]] || uri=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' | grep -v -- '-security' | head -n1 || true)
    [[ -n "$uri" ]] || { echo "base-image: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
    echo "$uri"
}

if [[ ! -f "$TARBALL" ]]; then
    command -v debootstrap >/dev/null || { echo "base-image: debootstrap missing (apt-get install debootstrap)" >&2; exit 1; }
    rootfs=$(mktemp -d /var/tmp/smc-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$(mirror)" >/dev/null
    # Slim the image: no apt lists, caches, docs or man pages.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    mkdir -p "$CACHE_DIR"
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL smc.rootfs.key=$KEY" \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$TAG" >/dev/null
echo "base-image: built $TAG (key $KEY, $(du -h "$TARBALL" | cut -f1) rootfs)"
