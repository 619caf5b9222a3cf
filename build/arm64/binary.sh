#!/usr/bin/env bash
# dist/smc-aarch64: `make binary ARCH=aarch64`. The same spec as dist/smc (spec/smc.spec), run by
# PyInstaller inside the arm64 root under emulation (PyInstaller bundles the machine it runs on:
# its aarch64 bootloader, and the libraries `ldd` finds there). The worker bundle is the one
# dist/smc carries: source and bytecode only, the same on every architecture.
#
# A full build takes minutes under emulation, so its result is kept as the base
# ($CACHE_DIR/arm64-base-<key>, keyed on the build venv, the root, the spec and this script) with
# the manifest of the x86_64 dist/smc built beside it. Afterwards, while the x86_64 build of this
# checkout collects the same foreign entries (everything but smc's own modules, entry script and
# worker bundle: build/arm64/repack.py manifest), smc's own code changed and nothing else did, and
# repack.py puts dist/smc's own entries into the base (seconds). Otherwise: a full build, the new
# base. SMC_ARM64_FULL=1 forces a full build.
#
#   bash build/arm64/binary.sh WORKER_BUNDLE X86_BINARY BUILD_PYTHON
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORKER_BUNDLE=$(realpath "$1")
X86_BINARY=$(realpath "$2")
BUILD_PYTHON=$3  # the x86_64 build venv's: the same CPython version as the aarch64 one
export CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
log() { echo "arm64-binary: $*" >&2; }

read -r venv image < <(bash "$HERE/venv.sh")
key=$({ basename "$venv"; echo "$image"; cat "$ROOT/spec/smc.spec" "$HERE/binary.sh"; } | sha256sum | cut -c1-12)
base=$CACHE_DIR/arm64-base-$key
bootloader=$venv/lib/python3.11/site-packages/PyInstaller/bootloader/Linux-64bit-arm/run
out=$ROOT/dist/smc-aarch64
mkdir -p "$ROOT/dist"
manifest=$(mktemp /var/tmp/smc-arm64-manifest.XXXXXX)
trap 'rm -f "$manifest"' EXIT
"$BUILD_PYTHON" "$HERE/repack.py" manifest "$X86_BINARY" >"$manifest"

if [[ ${SMC_ARM64_FULL:-0} != 1 && -f $base/.ok ]]; then
    if cmp -s "$manifest" "$base/x86-manifest.txt"; then
        log "re-pack: smc's own code from $X86_BINARY into the cached full build $base"
        objcopy=objcopy
        [[ $(uname -m) == aarch64 ]] || objcopy=aarch64-linux-gnu-objcopy  # binutils-aarch64-linux-gnu
        OBJCOPY=$objcopy "$BUILD_PYTHON" "$HERE/repack.py" repack "$base/smc" "$X86_BINARY" "$bootloader" "$out"
        ls -l "$out"
        exit 0
    fi
    log "the x86_64 build collects other foreign entries than beside the cached full build (+ now, - then):"
    diff "$base/x86-manifest.txt" "$manifest" | grep '^[<>]' | sed 's/^>/+/; s/^</-/' | head -n 20 >&2 || true
fi

work=$ROOT/.pyi-work-aarch64
mkdir -p "$work"
log "full build: pyinstaller under emulation (minutes)"
docker run --rm --platform linux/arm64 --network none --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -e SMC_WORKER_BUNDLE="$WORKER_BUNDLE" -e SETUPTOOLS_USE_DISTUTILS=stdlib \
    -v "$CACHE_DIR:$CACHE_DIR" -v "$ROOT:$ROOT" -w "$ROOT" "$image" \
    "$venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$work/dist" --workpath "$work" spec/smc.spec
rm -rf "$base.tmp"
mkdir -p "$base.tmp"
cp "$work/dist/smc" "$base.tmp/smc"
cp "$manifest" "$base.tmp/x86-manifest.txt"
"$BUILD_PYTHON" "$HERE/repack.py" manifest "$work/dist/smc" >"$base.tmp/aarch64-manifest.txt"  # for a look
touch "$base.tmp/.ok"
rm -rf "$base"
mv "$base.tmp" "$base"
cp "$work/dist/smc" "$out.tmp"
mv "$out.tmp" "$out"
ls -l "$out"
