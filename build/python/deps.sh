#!/usr/bin/env bash
# The libraries of smc's embedded CPython, built with zig for glibc 2.17 (toolchain.sh): zlib,
# bzip2, xz, libffi and SQLite as static archives (linked into the extension modules that use
# them), OpenSSL as shared libraries (libssl.so.3, libcrypto.so.3, as CPython loads them on every
# distribution). Output: $CACHE_DIR/python-deps-<key>/{include,lib}; <key> hashes the manifest,
# this script and the toolchain. Prints that prefix.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
PYTHON=${PYTHON:-python3}
JOBS=${JOBS:-$(nproc)}
log() { echo "python-deps: $*" >&2; }

KEY=$(cat "$HERE/sources.txt" "$HERE/deps.sh" "$HERE/toolchain.sh" | sha256sum | cut -c1-12)
DEPS=$CACHE_DIR/python-deps-$KEY
[[ -f $DEPS/.ok ]] && { echo "$DEPS"; exit 0; }
mkdir -p "$CACHE_DIR"
exec 9>"$CACHE_DIR/.python-deps.lock"
flock 9
[[ -f $DEPS/.ok ]] && { echo "$DEPS"; exit 0; }

bash "$HERE/fetch.sh" >&2
SRC=${SMC_SOURCES_DIR:-$CACHE_DIR/sources}
rm -rf "$DEPS"  # what a failed build left
WORK=$(mktemp -d /var/tmp/smc-python-deps.XXXXXX)
# The logs of the last build stay in $CACHE_DIR/python-deps-logs for a look after a failure.
trap 'mkdir -p "$CACHE_DIR/python-deps-logs" && cp "$WORK"/*.log "$CACHE_DIR/python-deps-logs/" 2>/dev/null; rm -rf "$WORK"' EXIT
mkdir -p "$DEPS/lib/pkgconfig" "$DEPS/include"
source "$HERE/toolchain.sh"

log "zlib"
unpack zlib zlib_1.2.13.dfsg.orig.tar.bz2
step zlib env CFLAGS="$BASE_CFLAGS" ./configure --static --prefix="$DEPS"
step zlib make -j"$JOBS" libz.a
step zlib make install

log "bzip2"
unpack bzip2 bzip2_1.0.8.orig.tar.gz
step bzip2 make -j"$JOBS" libbz2.a CC=cc AR=ar RANLIB=ranlib CFLAGS="$BASE_CFLAGS -D_FILE_OFFSET_BITS=64"
cp libbz2.a "$DEPS/lib/" && cp bzlib.h "$DEPS/include/"

log "xz"
unpack xz xz-utils_5.4.1.orig.tar.xz
step xz env CFLAGS="$BASE_CFLAGS" ./configure --prefix="$DEPS" --disable-shared --enable-static --with-pic \
    --disable-xz --disable-xzdec --disable-lzmadec --disable-lzmainfo --disable-scripts \
    --disable-doc --disable-nls
step xz make -j"$JOBS"
step xz make install

log "libffi"
unpack libffi libffi_3.4.4.orig.tar.gz
# libffi 3.4.4 calls open_temp_exec_file() before declaring it (fixed upstream in 3.4.5), which
# clang 16 and later reject unless told that an implicit declaration is only a warning.
step libffi env CFLAGS="$BASE_CFLAGS -Wno-error=implicit-function-declaration" ./configure --prefix="$DEPS" \
    --disable-shared --enable-static --with-pic --disable-docs --disable-multi-os-directory
step libffi make -j"$JOBS"
step libffi make install

log "sqlite"
unpack sqlite sqlite3_3.40.1.orig.tar.xz
step sqlite env CFLAGS="$BASE_CFLAGS -DSQLITE_ENABLE_FTS5 -DSQLITE_ENABLE_JSON1 -DSQLITE_ENABLE_RTREE -DSQLITE_ENABLE_MATH_FUNCTIONS" \
    ./configure --prefix="$DEPS" --disable-shared --enable-static --with-pic --disable-tcl \
    --disable-readline --disable-editline
step sqlite make -j"$JOBS" libsqlite3.la
cp .libs/libsqlite3.a "$DEPS/lib/" && cp sqlite3.h sqlite3ext.h "$DEPS/include/"
sed -e "s|@prefix@|$DEPS|; s|@exec_prefix@|$DEPS|; s|@libdir@|$DEPS/lib|; s|@includedir@|$DEPS/include|" \
    -e "s|@PACKAGE_VERSION@|3.40.1|; s|@LIBS@|-lm -lpthread|" sqlite3.pc.in > "$DEPS/lib/pkgconfig/sqlite3.pc"

log "openssl"
unpack openssl openssl_3.0.22.orig.tar.gz
# OPENSSLDIR /etc/ssl: Debian's and Ubuntu's layout (cert.pem, certs/); smc points OpenSSL at the
# CA bundle of RHEL-like and other distributions at start (supervisor_app/tls.py).
step openssl ./Configure linux-x86_64 shared no-tests no-module --prefix="$DEPS" --libdir=lib \
    --openssldir=/etc/ssl -O2 -fno-sanitize=undefined '-Wl,-rpath,$$ORIGIN'
step openssl make -j"$JOBS" build_libs
step openssl make install_dev

touch "$DEPS/.ok"
echo "$DEPS"
