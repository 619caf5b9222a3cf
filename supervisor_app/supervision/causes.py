"""Why a child process ended, in words: smc's own kills, gunicorn's timeouts, the kernel's OOM
killer, or a signal from elsewhere. A SIGKILL is called out of memory only when the memory
cgroup's oom_kill counter grew between a reading before the child's start (or its last death)
and one after its exit, never by guess. serve's loops, sidecars, gunicorn's reaping and train's
runner all say it the same way."""

from __future__ import annotations

import signal
from pathlib import Path

from supervisor_app import exitcodes

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def _oom_files(proc_cgroup: Path = Path("/proc/self/cgroup"), root: Path = _CGROUP_ROOT) -> list[Path]:
    """Where this process's memory cgroup keeps its OOM-kill counter (v2 and v1 layouts)."""
    candidates: list[Path] = []
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":
            candidates.append(root / relative / "memory.events")
        elif "memory" in controllers.split(","):
            candidates.append(root / "memory" / relative / "memory.oom_control")
    # In a container the cgroup is usually mounted at the root of the hierarchy.
    candidates += [root / "memory.events", root / "memory" / "memory.oom_control"]
    return candidates


def read_oom_kills(files: list[Path]) -> int | None:
    for path in files:
        try:
            text = path.read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill" and value.strip().isdigit():
                return int(value)
    return None


class OomCounter:
    """Remembers the cgroup's oom_kill count, to tell whether a SIGKILL since came from the OOM killer."""

    def __init__(self, files: list[Path] | None = None) -> None:
        self.files = _oom_files() if files is None else files
        self.seen = read_oom_kills(self.files)

    def new_kills(self) -> int | None:
        """OOM kills in the cgroup since the last call; None if the counter cannot be read."""
        now = read_oom_kills(self.files)
        if now is None or self.seen is None:
            self.seen = now
            return None
        new, self.seen = now - self.seen, now
        return new


def describe(code: int, *, killed_by_smc: str | None = None, timed_out_s: float | None = None,
             oom_kills: int | None = None) -> str:
    """The cause of exit code `code` (128+n: signal n) as a person would want it stated."""
    if killed_by_smc:
        return f"killed by smc ({killed_by_smc})"
    if timed_out_s is not None:
        return (f"killed by gunicorn: no answer within {timed_out_s:g} s (SAGEMAKER_MODEL_SERVER_TIMEOUT + 5 s), "
                "the handler ignored the timeout")
    if code == exitcodes.from_signal(signal.SIGKILL):
        if oom_kills:
            return "killed by SIGKILL from the kernel's OOM killer (the memory cgroup counted an oom_kill)"
        if oom_kills == 0:
            return "killed by SIGKILL (not by smc; OOM counter unchanged)"
        return "killed by SIGKILL (not by smc; the memory cgroup's OOM counter is not readable, so whether it was OOM is unknown)"
    if code > exitcodes.SIGNAL_BASE and code - exitcodes.SIGNAL_BASE < signal.NSIG:
        return f"killed by {exitcodes.signal_name(code - exitcodes.SIGNAL_BASE)}"
    return exitcodes.describe_exit(code)
