#!/usr/bin/env bash
# Install the Debian packages smc's build, demo or tests need, if any is missing.
#   bash build/system-deps.sh demo   # nginx for `make demo`
#   bash build/system-deps.sh test   # everything `make test` uses (Docker Engine itself excepted)
#   bash build/system-deps.sh images # debootstrap for `make images` (the base and distribution images)
#   bash build/system-deps.sh binary # what build/python/ needs to build the embedded interpreter
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

packages=(make gcc nginx-light)
if [[ "${1:-demo}" == test ]]; then
    # openjdk: multi-model-server, the oracle of the serving differential test and the MME tests
    packages+=(wrk hyperfine debootstrap util-linux procps iproute2 patchelf docker-compose openjdk-17-jre-headless)
elif [[ "${1:-demo}" == images ]]; then
    packages=(debootstrap)
elif [[ "${1:-demo}" == binary ]]; then
    # tcl: SQLite's build generates its sources with tclsh; curl fetches the sources from the pool.
    packages=(make patch curl xz-utils bzip2 tcl pkg-config)
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
