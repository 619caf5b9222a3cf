#!/usr/bin/env bash
# Build smc's embedded CPython so that it, and every library it loads, needs glibc 2.17 at most
# (manylinux2014's baseline: Amazon Linux 2, RHEL 7, Ubuntu 14.04 and everything newer).
#
# How: zig's C compiler (PyPI package `ziglang`) links against the symbol versions of the glibc it
# is told to target (-target x86_64-linux-gnu.2.17), whatever glibc the build machine has. Sources
# come from Debian's pool (fetch.sh, sources.txt): CPython 3.11.2 with the security patches of
# Debian's python3.11 applied, OpenSSL built as shared libraries (as CPython loads them today),
# zlib, bzip2, xz, libffi and SQLite linked statically into the extension modules that use them.
# Not built (documented in docs/ARCHITECTURE.md): readline, curses, gdbm, tkinter, uuid's C helper.
#
# Output: $CACHE_DIR/python-<key>/ with bin/python3 and lib/libpython3.11.so; <key> hashes the
# manifest, this script and the zig version, so a warm call returns at once. Prints that prefix.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}

DEPS=$(bash "$HERE/deps.sh")
KEY=$(cat "$HERE/sources.txt" "$HERE/build.sh" "$HERE/toolchain.sh" <(echo "$DEPS") | sha256sum | cut -c1-12)
PREFIX=$CACHE_DIR/python-$KEY
if [[ -f $PREFIX/.ok ]]; then
    echo "$PREFIX"
    exit 0
fi
log() { echo "python-build: $*" >&2; }

mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.python-build.lock"
flock 9
[[ -f $PREFIX/.ok ]] && { echo "$PREFIX"; exit 0; }

bash "$HERE/fetch.sh" >&2
SRC=${SMC_SOURCES_DIR:-$CACHE_DIR/sources}
rm -rf "$PREFIX"  # what a failed build left
WORK=$(mktemp -d /var/tmp/smc-python-build.XXXXXX)
# The logs of the last build stay in $CACHE_DIR/python-build-logs for a look after a failure.
trap 'mkdir -p "$CACHE_DIR/python-build-logs" && cp "$WORK"/*.log "$CACHE_DIR/python-build-logs/" 2>/dev/null; rm -rf "$WORK"' EXIT
source "$HERE/toolchain.sh"

log "cpython"
unpack cpython python3.11_3.11.2.orig.tar.gz
# Debian's security patches for 3.11.2: the series from its first CVE fix on (the patches above it
# adapt CPython to Debian's layout, which smc does not want).
mkdir -p "$WORK/debian" && tar -xf "$SRC/python3.11_3.11.2-6+deb12u8.debian.tar.xz" -C "$WORK/debian"
series=$WORK/debian/debian/patches/series
first=$(grep -n '^CVE-' "$series" | head -n1 | cut -d: -f1)
tail -n +"$first" "$series" | grep -v '^#' | while read -r patch _; do
    [[ -n $patch ]] && patch -p1 --forward -s < "$WORK/debian/debian/patches/$patch"
done
# Debian's fix for CVE-2026-4224 makes pyexpat.c include an internal header, which Debian's build
# allows (pyexpat is built in there) and setup.py's does not: say it is a core module.
sed -i '1i #ifndef Py_BUILD_CORE_MODULE\n#  define Py_BUILD_CORE_MODULE 1\n#endif' Modules/pyexpat.c
# setup.py adds the build machine's /usr/include, /usr/local and multiarch folders to every
# extension's search path; their headers are glibc 2.36's and clash with zig's 2.17 ones.
"$PYTHON" - <<'PY'
import re
path = "setup.py"
text = open(path).read()
text, n = re.subn(r"(    def configure_compiler\(self\):\n)", r"\1        self.add_ldflags_cppflags()\n        return\n", text)
assert n == 1, "setup.py: configure_compiler not found"
open(path, "w").write(text)
PY
# zig's linker knows -soname but not its short form -h, which CPython's Makefile uses.
sed -i -e 's/-Wl,-h\$(INSTSONAME)/-Wl,-soname,$(INSTSONAME)/' -e 's/-Wl,-h\$@/-Wl,-soname,$@/' Makefile.pre.in
export PKG_CONFIG_PATH="$DEPS/lib/pkgconfig" PKG_CONFIG_LIBDIR="$DEPS/lib/pkgconfig"
# OpenSSL's shared libraries live beside libpython, where the extension modules' RUNPATH finds them.
mkdir -p "$PREFIX/lib" && cp -a "$DEPS"/lib/lib{ssl,crypto}.so* "$PREFIX/lib/"
# -O3 as the interpreter smc bundled before (pyenv's default build); computed gotos and the
# rest are CPython's defaults. No PGO: zig ships no profile runtime (bench/ compares speed).
step cpython ./configure --prefix="$PREFIX" --enable-shared --with-openssl="$DEPS" --with-openssl-rpath=no \
    --without-ensurepip --with-system-ffi --without-readline \
    CFLAGS="-fno-sanitize=undefined -Wno-error=date-time" OPT="-DNDEBUG -g0 -O3 -Xclang -O3 -flto=thin -fomit-frame-pointer -fwrapv" \
    CPPFLAGS="-I$DEPS/include" LDFLAGS="-L$DEPS/lib -flto=thin -Wl,-rpath,$PREFIX/lib"
# PY3LIBRARY= : no libpython3.so (the stable-ABI forwarder, which nothing in smc loads); zig 0.17
# cannot link a shared library from shared libraries alone ("version '.2.17' in target triple").
step cpython make -j"$JOBS" PY3LIBRARY=
step cpython make install PY3LIBRARY=
"$PREFIX/bin/python3" -c 'import ssl, sqlite3, lzma, bz2, zlib, ctypes, hashlib; print(ssl.OPENSSL_VERSION)' >&2
touch "$PREFIX/.ok"
echo "$PREFIX"
