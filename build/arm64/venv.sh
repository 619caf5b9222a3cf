#!/usr/bin/env bash
# The aarch64 build venv: smc's aarch64 CPython (build/arm64/python.sh) with requirements/build.txt,
# created inside the arm64 root (build/arm64/rootfs.sh) under emulation, so pip and later
# PyInstaller see an aarch64 machine. The wheels are fetched on the host first, for aarch64 and
# manylinux2014 (glibc 2.17) at most, and installed from there with no index: no network in the
# container, and nothing newer than the glibc baseline can be picked.
#
# Output: $CACHE_DIR/build-aarch64-<key> (key: the requirements and the interpreter's folder, which
# is keyed on its own inputs). Prints: VENV IMAGE.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
export CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
PYTHON=${PYTHON:-python3}
log() { echo "arm64-venv: $*" >&2; }

prefix=$(bash "$HERE/python.sh")
image=$(bash "$HERE/rootfs.sh")
requirements=$(cat "$ROOT/requirements/build.txt" "$ROOT/requirements/runtime.txt")
venv=$CACHE_DIR/build-aarch64-$({ echo "$requirements"; basename "$prefix"; } | sha256sum | cut -c1-12)
if [[ -f $venv/.ok ]]; then
    echo "$venv $image"
    exit 0
fi

wheels=$CACHE_DIR/wheels-aarch64-$(echo "$requirements" | sha256sum | cut -c1-12)
if [[ ! -f $wheels/.ok ]]; then
    log "wheels for aarch64 -> $wheels"
    "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
        --platform manylinux2014_aarch64 --platform manylinux_2_17_aarch64 --platform any \
        -r "$ROOT/requirements/build.txt" -d "$wheels"
    touch "$wheels/.ok"
fi

log "venv under emulation -> $venv"
rm -rf "$venv"
docker run --rm --platform linux/arm64 --network none --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -v "$CACHE_DIR:$CACHE_DIR" -v "$ROOT/requirements:/requirements:ro" "$image" sh -euc '
    "$1/bin/python3" -c "import platform, ssl, sqlite3, lzma, bz2, zlib, ctypes, hashlib; print(platform.machine(), ssl.OPENSSL_VERSION)" >&2
    "$1/bin/python3" -m venv "$2"
    "$2/bin/pip" install -q --disable-pip-version-check --no-index --find-links "$3" -r /requirements/build.txt
    touch "$2/.ok"' sh "$prefix" "$venv" "$wheels"
echo "$venv $image"
