# Sourced by deps.sh and build.sh: zig's C compiler as cc/c++/ar/ranlib, targeting glibc 2.17.
# Sets PATH, CC, CXX, AR, RANLIB, ZIG_GLOBAL_CACHE_DIR; needs CACHE_DIR, PYTHON, log().
ZIG_VERSION=0.17.0
GLIBC_TARGET=2.17
ZIG_VENV=$CACHE_DIR/zig-$ZIG_VERSION
if [[ ! -f $ZIG_VENV/.ok ]]; then
    "$PYTHON" -m venv "$ZIG_VENV"
    "$ZIG_VENV/bin/pip" install -q --disable-pip-version-check "ziglang==$ZIG_VERSION"
    touch "$ZIG_VENV/.ok"
fi
TOOLS=$ZIG_VENV/glibc-$GLIBC_TARGET-bin
mkdir -p "$TOOLS"
# One wrapper per tool: autoconf and OpenSSL's Configure expect CC to be one word.
for name in cc c++ ar ranlib; do
    case $name in
        cc|c++) printf '#!/bin/sh\nexec "%s" -m ziglang %s -target x86_64-linux-gnu.%s "$@"\n' "$ZIG_VENV/bin/python" "$name" "$GLIBC_TARGET" ;;
        *) printf '#!/bin/sh\nexec "%s" -m ziglang %s "$@"\n' "$ZIG_VENV/bin/python" "$name" ;;
    esac > "$TOOLS/$name.tmp"
    chmod +x "$TOOLS/$name.tmp" && mv "$TOOLS/$name.tmp" "$TOOLS/$name"
done
export PATH=$TOOLS:$PATH CC=cc CXX=c++ AR=ar RANLIB=ranlib
# zig keeps what it compiles once (libc stubs, compiler-rt, libc++) in its cache: keep it with smc's.
export ZIG_GLOBAL_CACHE_DIR=$CACHE_DIR/zig-cache
# -fno-sanitize=undefined: zig cc turns on UBSan traps unless told otherwise.
BASE_CFLAGS="-O2 -fPIC -fno-sanitize=undefined"

# Each step's output goes to a log that is shown only when the step fails.
step() {
    local name=$1; shift
    "$@" >>"$WORK/$name.log" 2>&1 || { log "$name failed: $*"; tail -n 60 "$WORK/$name.log" >&2; exit 1; }
}
unpack() { mkdir -p "$WORK/src/$1"; tar -xf "$SRC/$2" -C "$WORK/src/$1" --strip-components=1; cd "$WORK/src/$1"; }
