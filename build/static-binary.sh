#!/usr/bin/env bash
# Build dist/smc-static: the one-file smc made self-contained with staticx (its own glibc, loader
# and libraries), for images with no OS at all (`FROM scratch`). Needs patchelf (Debian package).
#
# Inputs: spec/smc-static.spec (= spec/smc.spec with rpath-free ELF copies, which staticx requires)
# and the build venv of `make binary`. staticx lives in its own venv under ~/.cache/smc, keyed on
# its pinned version; the result is rebuilt only when the sources changed.
set -euo pipefail
cd "$(dirname "$0")/.."

STATICX_VERSION=0.14.2
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
PYTHON=${PYTHON:-python3}
# staticx reads the PyInstaller archive with PyInstaller's own reader (without it, it silently skips
# the bundled libraries' dependencies, and libpython then misses libm.so.6 at run time), so its venv
# gets the PyInstaller version that builds the binary.
PYINSTALLER_PIN=$(grep -E '^pyinstaller==' requirements/build.txt)
STATICX_VENV=$CACHE_DIR/staticx-$STATICX_VERSION-${PYINSTALLER_PIN#*==}
WORK=.pyi-work/static
OUT=dist/smc-static

command -v patchelf >/dev/null || { echo "static-binary: patchelf missing (apt-get install patchelf)" >&2; exit 1; }
# The Makefile names the build venv (keyed on its requirements); ask it instead of repeating the key.
BUILD_VENV=$(make -s --no-print-directory --eval='print-build-venv: ; @echo $(BUILD_VENV)' print-build-venv)
[[ -x $BUILD_VENV/bin/pyinstaller ]] || make -s venvs >/dev/null
# The worker bundle spec/smc.spec packs (smc serve under the image's Python): the Makefile builds it.
make -s --no-print-directory .pyi-work/smc-worker.zip >/dev/null
export SMC_WORKER_BUNDLE=$PWD/.pyi-work/smc-worker.zip

if [[ ! -f $STATICX_VENV/.ok ]]; then
    "$PYTHON" -m venv "$STATICX_VENV"
    "$STATICX_VENV/bin/pip" install -q --disable-pip-version-check "staticx==$STATICX_VERSION" "$PYINSTALLER_PIN"
    touch "$STATICX_VENV/.ok"
fi

# Each step is redone only when a source is newer than its output.
sources=(spec/smc.spec spec/smc-static.spec requirements "$0" .pyi-work/smc-worker.zip)
mapfile -t py_sources < <(find supervisor_app -name '*.py')
stale() { [[ ! -f $1 ]] || [[ -n $(find "${sources[@]}" "${py_sources[@]}" -newer "$1" -print -quit) ]]; }
if ! stale "$OUT"; then
    echo "static-binary: $OUT is current"
    exit 0
fi

mkdir -p "$WORK" dist
if stale "$WORK/dist/smc"; then
    SETUPTOOLS_USE_DISTUTILS=stdlib "$BUILD_VENV/bin/pyinstaller" --noconfirm --log-level WARN \
        --distpath "$WORK/dist" --workpath "$WORK" spec/smc-static.spec
fi
# --no-compress: staticx's default xz payload is inflated at every start (measured here: `smc
# version` 780 ms compressed vs 186 ms uncompressed, onefile 136 ms); the file grows from 16 to 32 MB
# but compresses to 18 MB in an image layer or download.
"$STATICX_VENV/bin/staticx" --no-compress "$WORK/dist/smc" "$OUT.tmp"
chmod 755 "$OUT.tmp"  # staticx writes mode 0700
mv "$OUT.tmp" "$OUT"
ls -l "$OUT"
