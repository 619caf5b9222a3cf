"""Process duties smc has as PID 1 (after tini): clean child environments, subreaping,
reaping, and turning wait statuses into exit codes and causes a person can read."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

from supervisor_app import exitcodes, tls
# Re-exported: the words for an exit live in exitcodes.py, which the worker side imports too.
from supervisor_app.exitcodes import describe_exit, exit_code, signal_name  # noqa: F401

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_SET_NAME = 15
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)  # ask smc to stop: train and serve alike
_BUNDLE_ENV_PREFIXES = ("_PYI_", "_MEIPASS")


class StopRequested(BaseException):
    """SIGTERM/SIGINT while no loop of smc's watches the signals (start-up, pip, a DNS wait): there
    is nothing to drain yet, so smc unwinds and exits 128+n. BaseException, so no `except
    Exception` on the way up swallows it."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: Any) -> None:
    raise StopRequested(signum)


def stop_on_signals(signals: tuple[int, ...] = STOP_SIGNALS) -> None:
    """From here until a supervision loop takes them over (and again after it hands them back),
    a stop signal raises StopRequested; without this an early SIGTERM killed smc with no word and
    left what it had created (the serve run directory) behind."""
    for signum in signals:
        signal.signal(signum, _raise_stop)


def is_frozen() -> bool:
    return bool(getattr(sys, "frozen", False))


def self_command() -> list[str]:
    """argv that starts smc again: the binary itself when frozen, else this package."""
    if is_frozen():
        return [sys.executable]
    return [sys.executable, "-m", "supervisor_app"]


def self_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for a child that re-runs smc. Keeping _PYI_* lets the onefile bootloader
    reuse the folder this process unpacked (about 50 ms instead of a fresh unpack)."""
    return dict(environ)


def foreign_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Environment for any other program (nginx, the image's python, user tools): without the
    bundle's library path, which would make them load our libssl/libz, and without _PYI_*,
    which would make a python child think it is part of this bundle, and without the
    SSL_CERT_FILE smc set for its own OpenSSL (tls.py); a user's own SSL_CERT_FILE stays."""
    env = tls.own_setting_removed({k: v for k, v in environ.items() if not k.startswith(_BUNDLE_ENV_PREFIXES)})
    if is_frozen() or "LD_LIBRARY_PATH_ORIG" in env:
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    return ctypes.CDLL(None, use_errno=True).prctl  # type: ignore[no-any-return]


def become_subreaper() -> bool:
    """Orphans below smc are re-parented to smc, not to the onefile bootloader (PID 1 in a
    container), which never reaps them."""
    prctl = _prctl()
    return prctl is not None and prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def death_signal_setter(signum: int) -> Callable[[], None] | None:
    """A preexec_fn asking the kernel to send `signum` to the child when smc dies. prctl is looked
    up here, before the fork: a preexec_fn must not import."""
    prctl = _prctl()
    if prctl is None:
        return None

    def set_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0)

    return set_death_signal


def set_process_name(name: str) -> None:
    """The name ps, top and /proc/PID/comm show (15 bytes at most): a forked child of smc is
    otherwise `smc` like its parent."""
    prctl = _prctl()
    if prctl is not None:
        prctl(_PR_SET_NAME, name.encode()[:15], 0, 0, 0)


def stop_with_bootloader(signum: int = signal.SIGTERM) -> int:
    """In the onefile build the process a user sees (and kill -9s) is PyInstaller's bootloader;
    smc proper is its child and would keep serving with PPID 1. When the parent is the same
    executable (the bootloader, or smc re-executing itself), ask the kernel for `signum` when it
    dies: smc then stops as on a SIGTERM, children and port included. Not for a parent that is
    anything else (a shell, docker-init): `nohup smc serve &` must outlive its shell.
    Returns the parent's pid when watching it, else 0."""
    if not is_frozen():
        return 0
    prctl = _prctl()
    parent = os.getppid()
    if prctl is None or parent <= 1 or not _same_executable(parent):
        return 0
    if prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        return 0
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signum)
    if not _same_executable(_parent_of(parent)):  # the parent is the bootloader, not smc re-executed
        _watching[:] = [os.getpid(), parent]
    return parent


def _parent_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rfind(b")") + 2:].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


_watching: list[int] = []  # [this process, the parent it watches] once stop_with_bootloader() took effect


def remove_orphaned_bundle() -> None:
    """The bootloader deletes the unpacked bundle ($TMPDIR/_MEIxxxxxx) when it exits; a killed one
    cannot. Then smc, its last user (every descendant is stopped by now), removes it. Only in the
    process that asked to be watched: a forked gunicorn worker unwinds through the same code."""
    bundle = getattr(sys, "_MEIPASS", "")
    if not _watching or os.getpid() != _watching[0] or os.getppid() == _watching[1]:
        return
    if not os.path.basename(bundle).startswith("_MEI"):
        return
    import shutil

    shutil.rmtree(bundle, ignore_errors=True)


def _same_executable(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        return os.readlink(f"/proc/{pid}/exe") == os.readlink("/proc/self/exe")
    except OSError:
        return False


def killpg(pgid: int, signum: int) -> None:
    """Signal a whole process group that may already be gone (or, after setuid, not ours)."""
    if pgid <= 0:
        return
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def descendants(root: int | None = None) -> list[int]:
    """Live (not zombie) processes below `root` (default: this process), from /proc. As a
    subreaper, smc has every orphan of its subtree below it, setsid() or double-forked ones too."""
    root = os.getpid() if root is None else root
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2:].split()
        if len(fields) > 1 and fields[0] != b"Z":
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), ()):
            found.append(pid)
            todo.append(pid)
    return found


def stop_descendants(grace_s: float, log: Any) -> int:
    """smc's last duty before exiting: no process it started may outlive it. SIGTERM every
    descendant, reap, wait up to `grace_s` for them to go, then SIGKILL what is left. A stop
    signal arriving meanwhile skips the rest of the wait. Returns how many were signalled."""
    pending = descendants()
    if not pending:
        reap()
        return 0
    hurry: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, f: hurry.append(s)) for sig in STOP_SIGNALS}
    try:
        log.warning("descendants_stopping", child_pids=pending[:20], count=len(pending), grace_s=grace_s,
                    why="still running when smc is about to exit")
        signalled = set(pending)
        for pid in pending:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        delay_s = 0.005
        while pending and time.monotonic() < deadline and not hurry:
            time.sleep(delay_s)
            delay_s = min(delay_s * 2, 0.1)
            reap()
            pending = descendants()
            for pid in set(pending) - signalled:  # started while we waited
                signalled.add(pid)
                _kill(pid, signal.SIGTERM)
        if pending:
            log.warning("descendants_killed", child_pids=pending[:20], count=len(pending), signal="SIGKILL",
                        why="second stop signal" if hurry else f"still running after {grace_s:g} s")
        for _ in range(50):  # SIGKILL until none is left: a dying parent may have forked again
            if not pending:
                break
            for pid in pending:
                _kill(pid, signal.SIGKILL)
            time.sleep(0.01)
            reap()
            pending = descendants()
        reap()
        return len(signalled)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _kill(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def reap(block: bool = False) -> list[tuple[int, int]]:
    """Collect every exited child: (pid, raw wait status) pairs."""
    reaped: list[tuple[int, int]] = []
    flags = 0 if block else os.WNOHANG
    while True:
        try:
            pid, status = os.waitpid(-1, flags)
        except ChildProcessError:
            return reaped
        except InterruptedError:
            continue
        if pid == 0:
            return reaped
        reaped.append((pid, status))
        flags = os.WNOHANG


def is_pid1() -> bool:
    return os.getpid() == 1
