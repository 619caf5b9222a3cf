"""Process duties smc has as PID 1 (after tini): clean child environments, subreaping,
reaping, and turning wait statuses into exit codes and causes a person can read."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping

from supervisor_app import exitcodes

_PR_SET_CHILD_SUBREAPER = 36
_BUNDLE_ENV_PREFIXES = ("_PYI_", "_MEIPASS")


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
    which would make a python child think it is part of this bundle."""
    env = {k: v for k, v in environ.items() if not k.startswith(_BUNDLE_ENV_PREFIXES)}
    if is_frozen() or "LD_LIBRARY_PATH_ORIG" in env:
        original = env.pop("LD_LIBRARY_PATH_ORIG", None)
        if original:
            env["LD_LIBRARY_PATH"] = original
        else:
            env.pop("LD_LIBRARY_PATH", None)
    return env


def become_subreaper() -> bool:
    """Orphans below smc are re-parented to smc, not to the onefile bootloader (PID 1 in a
    container), which never reaps them."""
    if not sys.platform.startswith("linux"):
        return False
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


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


def exit_code(status: int) -> int:
    """Shell convention: the exit code, or 128 + n for a child killed by signal n."""
    if os.WIFSIGNALED(status):
        return exitcodes.from_signal(os.WTERMSIG(status))
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return exitcodes.FAILURE


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(code: int) -> str:
    """A cause in words, e.g. for the failure file: 'exit code 3', 'killed by SIGKILL: likely out of memory'."""
    if code > exitcodes.SIGNAL_BASE and code - exitcodes.SIGNAL_BASE < signal.NSIG:
        signum = code - exitcodes.SIGNAL_BASE
        text = f"killed by {signal_name(signum)}"
        if signum == signal.SIGKILL:
            text += ": likely out of memory (the kernel's OOM killer sends SIGKILL)"
        return text
    if code == exitcodes.NOT_FOUND:
        return "exit code 127: command not found"
    if code == exitcodes.NOT_EXECUTABLE:
        return "exit code 126: not executable"
    return f"exit code {code}"


def is_pid1() -> bool:
    return os.getpid() == 1
