#!/usr/bin/env bash
# Install the Debian packages a make target needs, if any is missing (each target calls it).
#   bash build/system-deps.sh demo     # nginx for `make demo`
#   bash build/system-deps.sh test     # everything `make test` uses (Docker Engine itself excepted)
#   bash build/system-deps.sh bench    # `make bench` (Java is optional: without it the MMS rows are skipped)
#   bash build/system-deps.sh images   # `make images`: debootstrap (smc-base), patchelf (the scratch image's binary)
#   bash build/system-deps.sh binary   # build/python/: the embedded interpreter (tclsh for SQLite, curl for the sources)
#   bash build/system-deps.sh arm64    # `make binary ARCH=aarch64` and tests/arm64: qemu-user, debootstrap
#   bash build/system-deps.sh --list GROUP   # print the group's packages, install nothing
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

list=0
if [[ "${1:-}" == --list ]]; then
    list=1
    shift
fi
packages=(make gcc nginx-light)
case "${1:-demo}" in
    demo) ;;
    # openjdk: multi-model-server, the oracle of the serving differential test and the MME tests
    test) packages+=(wrk hyperfine debootstrap util-linux procps iproute2 patchelf docker-compose openjdk-17-jre-headless) ;;
    bench) packages+=(wrk util-linux) ;;  # util-linux: unshare, for the MMS rows
    images) packages+=(debootstrap patchelf) ;;
    binary) packages=(make patch curl xz-utils bzip2 tcl pkg-config) ;;
    arm64) packages=(make patch curl xz-utils bzip2 tcl pkg-config qemu-user-static binfmt-support debootstrap binutils-aarch64-linux-gnu) ;;
    *) echo "system-deps: unknown group ${1} (demo, test, bench, images, binary or arm64)" >&2; exit 2 ;;
esac
if ((list)); then
    echo "${packages[*]}"
    exit 0
fi

missing=()
for pkg in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
((${#missing[@]})) || exit 0
if [[ $(id -u) -ne 0 ]]; then
    echo "system-deps: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
fi
echo "system-deps: installing ${missing[*]}"
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
