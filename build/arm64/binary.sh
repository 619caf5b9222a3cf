#!/usr/bin/env bash
# dist/smc-aarch64: `make binary ARCH=aarch64`. The same spec as dist/smc (spec/smc.spec), run by
# PyInstaller inside the arm64 root under emulation (PyInstaller bundles the machine it runs on:
# its aarch64 bootloader, and the libraries `ldd` finds there). The worker bundle is the one
# dist/smc carries: source and bytecode only, the same on every architecture.
#
#   bash build/arm64/binary.sh WORKER_BUNDLE
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORKER_BUNDLE=$(realpath "$1")
export CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
read -r venv image < <(bash "$HERE/venv.sh")
work=$ROOT/.pyi-work-aarch64
mkdir -p "$work" "$ROOT/dist"
echo "arm64-binary: pyinstaller under emulation (minutes)" >&2
docker run --rm --platform linux/arm64 --network none --user "$(id -u):$(id -g)" -e HOME=/tmp \
    -e SMC_WORKER_BUNDLE="$WORKER_BUNDLE" -e SETUPTOOLS_USE_DISTUTILS=stdlib \
    -v "$CACHE_DIR:$CACHE_DIR" -v "$ROOT:$ROOT" -w "$ROOT" "$image" \
    "$venv/bin/pyinstaller" --noconfirm --log-level WARN --distpath "$work/dist" --workpath "$work" spec/smc.spec
cp "$work/dist/smc" "$ROOT/dist/smc-aarch64.tmp"
mv "$ROOT/dist/smc-aarch64.tmp" "$ROOT/dist/smc-aarch64"
ls -l "$ROOT/dist/smc-aarch64"
