"""What smc needs of the root it runs in, checked before it starts anything.

Docker, Kubernetes and SageMaker always mount /proc and write /etc/hosts, so a root without them
is a chroot, a sandbox or an `unshare` made by hand. There smc's own Python starts and even runs a
simple job, but without /proc it cannot see (or stop) the processes it started, the kill -9 of
its bootloader goes unnoticed, and nginx cannot open /dev/stdout (a link into /proc/self/fd):
train and serve would fail later, or leave processes behind, with causes far from the real one.
"""

from __future__ import annotations

from pathlib import Path

from supervisor_app.errors import BootError

PROC = Path("/proc")
HOSTS_FILE = Path("/etc/hosts")

PROC_HINT = (
    "mount it: Docker and Kubernetes always do; in a chroot run `mount -t proc proc ROOT/proc` "
    "first, or start it with `unshare --pid --fork --mount-proc=ROOT/proc chroot ROOT ...`"
)


def proc_missing(proc: Path = PROC) -> str | None:
    """Why /proc is unusable, or None when it is mounted (it always has /proc/self then)."""
    if not proc.is_dir():
        return f"{proc} does not exist in this root"
    if not (proc / "self").is_dir():
        return f"{proc} is not mounted in this root (no {proc}/self)"
    return None


def require_proc(proc: Path = PROC) -> None:
    """Raise BootError (exit 3) naming the cause and the fix when /proc is not mounted."""
    why = proc_missing(proc)
    if why is not None:
        raise BootError(
            f"{why}: smc needs /proc to find and stop the processes it starts, and nginx needs it "
            "for /dev/stdout",
            hint=PROC_HINT,
        )


def hosts_file_missing(hosts_file: Path = HOSTS_FILE) -> bool:
    """No /etc/hosts: names of the job's hosts can only come from DNS, and `localhost` may not
    resolve at all."""
    return not hosts_file.exists()
