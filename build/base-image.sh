#!/usr/bin/env bash
# Build a Debian image without a registry: debootstrap a minbase rootfs of one suite with a few
# packages, then `docker import` it.
#
#   bash build/base-image.sh                                   smc-base:latest: bookworm + nginx-light, no Python
#   bash build/base-image.sh SUITE PACKAGES TAG                e.g. bullseye nginx-light,python3 smc-distro-bullseye:latest
#
# PACKAGES is debootstrap's comma-separated --include list. SMC_BASE_TAG still names the default
# image's tag. Cached: the rootfs tarball under ~/.cache/smc keyed on this script's content, the
# suite and the packages; the image carries that key as a label, so nothing is rebuilt when
# nothing changed.
set -euo pipefail

SUITE=${1:-bookworm}
PACKAGES=${2:-nginx-light}
TAG=${3:-${SMC_BASE_TAG:-smc-base:latest}}
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
KEY=$({ cat "$0"; echo "$SUITE $PACKAGES"; } | sha256sum | cut -c1-12)
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
    [[ -e /usr/share/debootstrap/scripts/$SUITE ]] || {
        echo "base-image: this debootstrap does not know the suite '$SUITE' (a newer debootstrap package does)" >&2
        exit 1
    }
    rootfs=$(mktemp -d /var/tmp/smc-rootfs.XXXXXX)
    log=$rootfs.log
    trap 'rm -rf "$rootfs" "$log"' EXIT
    uri=$(mirror)
    if ! debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$rootfs" "$uri" >"$log" 2>&1; then
        # debootstrap's own log says which package or Release file the mirror did not serve.
        echo "base-image: debootstrap of $SUITE from $uri failed:" >&2
        tail -n 20 "$log" >&2
        [[ -f $rootfs/debootstrap/debootstrap.log ]] && tail -n 20 "$rootfs/debootstrap/debootstrap.log" >&2
        exit 1
    fi
    # Slim the image: no apt lists, caches, docs or man pages.
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/usr/share/doc/* \
           "$rootfs"/usr/share/man/* "$rootfs"/usr/share/locale/*
    mkdir -p "$CACHE_DIR"
    tar -C "$rootfs" --numeric-owner -cf "$TARBALL.tmp" .
    mv "$TARBALL.tmp" "$TARBALL"
fi

previous=$(docker image inspect -f '{{.Id}}' "$TAG" 2>/dev/null || true)
docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "LABEL smc.rootfs.key=$KEY" \
    --change "LABEL smc.rootfs.suite=$SUITE" \
    --change "LABEL smc.rootfs.packages=$PACKAGES" \
    --change 'CMD ["/bin/bash"]' \
    "$TARBALL" "$TAG" >/dev/null
# The image the tag named before is now untagged: remove it rather than leave a dangling copy per
# rebuild (kept while a container or another image still uses it).
if [[ -n $previous && $previous != "$(docker image inspect -f '{{.Id}}' "$TAG")" ]]; then
    docker image rm "$previous" >/dev/null 2>&1 || true
fi
echo "base-image: built $TAG ($SUITE + $PACKAGES, key $KEY, $(du -h "$TARBALL" | cut -f1) rootfs)"
