#!/usr/bin/env bash
# smc's embedded CPython for aarch64, cross-compiled on this x86_64 machine with the same zig
# toolchain, sources and patches as the x86_64 one (build/python/), for glibc 2.17 as well (which
# is also the oldest glibc that supports aarch64). No emulation: zig compiles for any target.
#
# How: build/python/'s scripts are copied and retargeted by the substitutions below (each one must
# match, or this fails), then run as they are. They stay untouched so that the x86_64 interpreter's
# cache key, which hashes them, does not change. The copies hash to their own key, so the result
# lands in $CACHE_DIR/python-<key> beside the x86_64 one. CPython's cross build needs a build
# Python of the same version: the x86_64 interpreter of build/python/build.sh.
#
# The interpreter is not run here (it is aarch64): build/arm64/venv.sh checks it under emulation.
# Prints the prefix.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
export PYTHON=${PYTHON:-python3}
log() { echo "arm64-python: $*" >&2; }

build_python=$(bash "$HERE/../python/build.sh")/bin/python3
scripts=$(mktemp -d /var/tmp/smc-arm64-scripts.XXXXXX)
trap 'rm -rf "$scripts"' EXIT
cp "$HERE"/../python/{build.sh,deps.sh,fetch.sh,toolchain.sh,sources.txt} "$scripts/"

# retarget FILE COUNT SED-EXPRESSION: apply a substitution that must change exactly COUNT lines.
retarget() {
    local file=$scripts/$1 count=$2 expr=$3 before
    before=$(cat "$file")
    sed -i "$expr" "$file"
    local changed
    changed=$(diff <(echo "$before") "$file" | grep -c '^>' || true)
    if [[ $changed != "$count" ]]; then
        log "build/python/$1 no longer matches '$expr' ($changed lines changed, $count expected): update build/arm64/python.sh"
        exit 1
    fi
}
# zig's target, and a wrapper folder of its own (the x86_64 wrappers stay as they are).
retarget toolchain.sh 1 's/-target x86_64-linux-gnu\./-target aarch64-linux-gnu./'
retarget toolchain.sh 1 's|^TOOLS=$ZIG_VENV/glibc-|TOOLS=$ZIG_VENV/aarch64-glibc-|'
# The libraries: autoconf's cross mode (libffi picks its assembly by --host), OpenSSL's target.
retarget deps.sh 3 's|\./configure --prefix="$DEPS"|./configure --host=aarch64-linux-gnu --build=x86_64-linux-gnu --prefix="$DEPS"|'
retarget deps.sh 1 's|\./Configure linux-x86_64 |./Configure linux-aarch64 |'
# CPython: cross mode with the x86_64 build Python. configure cannot run its test programs for
# another machine, so the answers they give on Linux (as the x86_64 build's pyconfig.h has them)
# are given: /dev/ptmx, getaddrinfo, tzset, computed gotos, sem_getvalue (multiprocessing.Queue.qsize),
# pthread scheduling scope, unaligned access (aarch64 allows it). binutils' readelf reads any ELF.
retarget build.sh 1 "s|step cpython ./configure --prefix=|step cpython ./configure --host=aarch64-linux-gnu --build=x86_64-linux-gnu --with-build-python=$build_python --enable-ipv6 ac_cv_file__dev_ptmx=yes ac_cv_file__dev_ptc=no ac_cv_buggy_getaddrinfo=no ac_cv_working_tzset=yes ac_cv_computed_gotos=yes ac_cv_broken_sem_getvalue=no ac_cv_pthread_system_supported=yes ac_cv_aligned_required=no READELF=\$(command -v readelf) --prefix=|"
retarget build.sh 1 's|^"$PREFIX/bin/python3" -c .import ssl.*|: # checked under emulation by build/arm64/venv.sh|'
bash "$scripts/build.sh"
