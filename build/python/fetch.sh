#!/usr/bin/env bash
# Fetch the files named in build/python/sources.txt into $SMC_SOURCES_DIR (default
# ~/.cache/smc/sources), each checked against its SHA-256. Files already there and matching are
# kept, so a warm run reads no network.
#
# Where from: Debian's source pool, through apt with a private configuration (its own lists
# directory, `deb-src` entries made from the machine's own apt sources), so the machine's apt
# setup is left as it is. apt prints each file's URI for a given source version; a file is looked
# for under every version of its package that the pool lists, newest first.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
DEST=${SMC_SOURCES_DIR:-$CACHE_DIR/sources}
MANIFEST=$HERE/sources.txt
mkdir -p "$DEST"

have() { [[ -f $DEST/$1 ]] && [[ $(sha256sum "$DEST/$1" | cut -d' ' -f1) == "$2" ]]; }

missing=()
while read -r pkg file sum; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    have "$file" "$sum" || missing+=("$pkg $file $sum")
done < "$MANIFEST"
((${#missing[@]})) || exit 0

command -v apt-get >/dev/null || { echo "python-fetch: apt-get missing: the sources come from Debian's pool" >&2; exit 1; }
APT_DIR=$(mktemp -d /var/tmp/smc-apt.XXXXXX)
trap 'rm -rf "$APT_DIR"' EXIT
mkdir -p "$APT_DIR/parts" "$APT_DIR/lists/partial" "$APT_DIR/cache/archives/partial"
# deb-src entries for the machine's own mirrors, and the suites the manifest's files come from.
shopt -s nullglob
for f in /etc/apt/sources.list.d/*.sources; do
    sed -e 's/^Types:.*/Types: deb-src/' \
        -e '/^Suites:/{/security/!s/$/ bookworm-updates trixie/}' "$f" > "$APT_DIR/parts/$(basename "$f")"
done
for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] && sed -n 's/^deb /deb-src /p' "$f" > "$APT_DIR/parts/$(basename "$f").list"
done
cat > "$APT_DIR/apt.conf" <<CONF
Dir::Etc::SourceList "/dev/null";
Dir::Etc::SourceParts "$APT_DIR/parts";
Dir::State::Lists "$APT_DIR/lists";
Dir::Cache "$APT_DIR/cache";
CONF
export APT_CONFIG=$APT_DIR/apt.conf
apt-get update -qq >/dev/null 2>&1 || apt-get update -qq

for entry in "${missing[@]}"; do
    read -r pkg file sum <<< "$entry"
    fetched=""
    # The security pool lists revisions whose .orig lives in the main pool: try each URI in turn.
    for version in $(apt-cache showsrc "$pkg" 2>/dev/null | sed -n 's/^Version: //p' | sort -rV | uniq); do
        url=$(apt-get source --print-uris --download-only "$pkg=$version" 2>/dev/null \
              | awk -v f="$file" '$2 == f {gsub("\047", "", $1); print $1; exit}')
        [[ -n $url ]] || continue
        if curl -fsSL --retry 3 -o "$DEST/$file.part" "$url" 2>/dev/null; then fetched=$url; break; fi
    done
    if [[ -z $fetched ]]; then
        rm -f "$DEST/$file.part"
        echo "python-fetch: Debian's pool serves no $file (source package $pkg); pin a file it serves in $MANIFEST (apt-cache showsrc $pkg, with deb-src entries, lists the versions)" >&2
        exit 1
    fi
    got=$(sha256sum "$DEST/$file.part" | cut -d' ' -f1)
    if [[ $got != "$sum" ]]; then
        rm -f "$DEST/$file.part"
        echo "python-fetch: $file has SHA-256 $got, $MANIFEST expects $sum" >&2
        exit 1
    fi
    mv "$DEST/$file.part" "$DEST/$file"
    echo "python-fetch: $file"
done
