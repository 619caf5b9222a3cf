#!/usr/bin/env bash
# Build the images of `make images`: smc-base (build/base-image.sh), the example projects and the
# distribution images.
#
#   bash build/images.sh                   all of them
#   bash build/images.sh tabular sklearn   some: tabular | sklearn | scratch | mme | fastapi | streaming | tiny-engine |
#                                          distros | byo-flask | engine (engine is not in "all": MLServer, ~1 GB)
#
# `distros`: smc-distro-<suite>:latest for each of DISTROS, debootstrapped with python3 and
# nginx-light and no smc (tests/images/test_distros.py adds the binary under test); Debian 11 has
# glibc 2.31 and Python 3.9, Debian 13 glibc 2.41 and Python 3.13.
#
# `byo-flask`: examples/byo-flask FROM smc-debian-flask-base:latest, Debian 12 with Debian's own
# python3-flask, python3-pandas and python3-sklearn (debootstrapped like the distros: about 2.5 min
# and an 880 MB rootfs when cold, scipy pulls in pythran's compilers as apt does; cached after).
#
# Each example is built the way a user builds it: its directory is the build context, with the
# binary copied next to its Dockerfile (COPY smc /usr/local/bin/). The copy happens in a staging
# directory, so the repository stays clean. Tags: smc-example-<name>:test (SMC_IMAGE_TAG changes
# the `test` part). The binary is dist/smc from `make binary`, or SMC_BINARY when set;
# the scratch image uses dist/smc-static from build/static-binary.sh (or SMC_STATIC_BINARY).
#
# SMC_ARCH=aarch64: the same examples for linux/arm64 (docker build --platform linux/arm64, RUN
# steps under qemu-user), with dist/smc-aarch64 (`make binary ARCH=aarch64`, or SMC_BINARY) as the
# context's smc, FROM smc-base:arm64 (build/arm64/rootfs.sh: Debian 12 arm64 + nginx-light; the
# staged Dockerfiles' `FROM smc-base:latest` is rewritten to it, as a user's FROM names a multi-arch
# image instead), wheels for manylinux2014_aarch64, tags smc-example-<name>:<tag>-arm64. Not for
# arm64: scratch (staticx), distros and byo-flask (x86_64 roots).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_DIR=${CACHE_DIR:-$HOME/.cache/smc}
TAG=${SMC_IMAGE_TAG:-test}
ALL=(tabular sklearn scratch mme fastapi streaming tiny-engine distros byo-flask)
ARCH=${SMC_ARCH:-x86_64}
case $ARCH in
    x86_64) WHEEL_ARCH=x86_64 ;;
    aarch64)
        PLATFORM=linux/arm64 WHEEL_ARCH=aarch64 TAG=$TAG-arm64
        ALL=(tabular sklearn mme fastapi streaming tiny-engine)
        ;;
    *) echo "images: SMC_ARCH=$ARCH is not built (x86_64 or aarch64)" >&2; exit 2 ;;
esac
DISTROS=(bullseye bookworm trixie)
# What examples/byo-flask's Dockerfile comment says its base stands for (`apt-get install` on debian:12).
FLASK_BASE_PACKAGES=nginx-light,python3,python3-flask,python3-pandas,python3-sklearn
names=("$@")
((${#names[@]})) || names=("${ALL[@]}")

bash build/system-deps.sh images
command -v docker >/dev/null || { echo "images: docker missing (apt-get install docker.io)" >&2; exit 1; }
docker info >/dev/null 2>&1 || { echo "images: the Docker daemon does not answer (is it running?)" >&2; exit 1; }

staging=$(mktemp -d /var/tmp/smc-images.XXXXXX)
trap 'rm -rf "$staging"' EXIT

quietly() {
    # Run a step with its output in a log, shown only when the step fails.
    local log=$staging/step.log
    if ! "$@" >"$log" 2>&1; then
        echo "images: failed: $*" >&2
        tail -n 60 "$log" >&2
        exit 1
    fi
}

binary=${SMC_BINARY:-}
if [[ -z $binary ]]; then
    quietly make -s binary ARCH="$ARCH"
    binary=dist/smc
    [[ $ARCH == aarch64 ]] && binary=dist/smc-aarch64
fi
if [[ $ARCH == aarch64 ]]; then
    quietly bash build/arm64/rootfs.sh nginx-light smc-base:arm64
else
    bash build/base-image.sh
fi

wheels_for() {
    # Wheels of a pinned requirements.txt, fetched on the host (docker build may have no route to
    # the package index, or not trust this network's proxy) and cached by the file's content.
    local requirements=$1 dest
    dest=$CACHE_DIR/wheels-$(sha256sum "$requirements" | cut -c1-12)
    [[ $ARCH == x86_64 ]] || dest=$dest-$ARCH
    if [[ ! -f $dest/.ok ]]; then
        python3 -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.11 --implementation cp --abi cp311 --abi abi3 --abi none \
            --platform manylinux_2_28_$WHEEL_ARCH --platform manylinux2014_$WHEEL_ARCH --platform any \
            -r "$requirements" -d "$dest"
        touch "$dest/.ok"
    fi
    echo "$dest"
}

build_distros() {
    local suite
    for suite in "${DISTROS[@]}"; do
        bash build/base-image.sh "$suite" nginx-light,python3 "smc-distro-$suite:latest"
    done
}

build() {
    local name=$1 context=$staging/$1 dockerfile=Dockerfile
    if [[ $ARCH != x86_64 ]]; then
        case $name in
            scratch | distros | byo-flask) echo "images: '$name' is built for x86_64 only" >&2; exit 2 ;;
        esac
    fi
    [[ $name == distros ]] && { build_distros; return; }
    case $name in
        tabular | sklearn | mme | engine | fastapi | streaming | tiny-engine)
            cp -a "examples/$name/." "$context/"
            cp "$binary" "$context/smc"
            ;;
        byo-flask)
            bash build/base-image.sh bookworm "$FLASK_BASE_PACKAGES" smc-debian-flask-base:latest
            cp -a "examples/$name/." "$context/"
            cp "$binary" "$context/smc"
            ;;
        scratch)
            # The tabular project again, FROM scratch, with the self-contained (staticx) binary.
            local static=${SMC_STATIC_BINARY:-}
            if [[ -z $static ]]; then
                quietly bash build/static-binary.sh
                static=dist/smc-static
            fi
            cp -a examples/tabular/. "$context/"
            cp "$static" "$context/smc-static"
            dockerfile=Dockerfile.scratch
            ;;
        *) echo "images: unknown image '$name' (known: ${ALL[*]} engine)" >&2; exit 2 ;;
    esac
    if [[ -f $context/requirements.txt ]]; then
        mkdir -p "$context/wheels"
        cp "$(wheels_for "$context/requirements.txt")"/*.whl "$context/wheels/"
    fi
    local image=smc-example-$name:$TAG started=$SECONDS previous
    previous=$(docker image inspect -f '{{.Id}}' "$image" 2>/dev/null || true)
    local platform=()
    if [[ $ARCH != x86_64 ]]; then
        sed -i 's/^FROM smc-base:latest/FROM smc-base:arm64/' "$context/$dockerfile"
        platform=(--platform "$PLATFORM")
    fi
    quietly docker build "${platform[@]}" -f "$context/$dockerfile" -t "$image" "$context"
    # The image this tag named before is ours and now untagged: remove it (and its build stages)
    # instead of leaving a dangling copy per rebuild. Still in use by a container: keep it.
    if [[ -n $previous && $previous != "$(docker image inspect -f '{{.Id}}' "$image")" ]]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
    echo "images: built $image in $((SECONDS - started)) s"
}

for name in "${names[@]}"; do
    mkdir -p "$staging/$name"
    build "$name"
done
docker image ls --format '{{.Repository}}:{{.Tag}}\t{{.Size}}' | grep -E '^smc-(base|example-|distro-|debian-)' | sort
