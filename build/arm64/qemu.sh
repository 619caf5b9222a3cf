#!/usr/bin/env bash
# Make this x86_64 machine run arm64 programs: qemu-user-static, registered with the kernel's
# binfmt_misc with the F flag (the interpreter is opened at registration, so it works inside
# chroots and containers too). Idempotent; needs root the first time after a boot.
set -euo pipefail
[[ $(uname -m) == aarch64 ]] && exit 0
[[ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]] || { echo "qemu: qemu-user-static missing (bash build/system-deps.sh arm64)" >&2; exit 1; }
[[ -f /proc/sys/fs/binfmt_misc/register ]] || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
[[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
grep -qx enabled /proc/sys/fs/binfmt_misc/qemu-aarch64 || { echo "qemu: binfmt_misc's qemu-aarch64 entry is disabled" >&2; exit 1; }
