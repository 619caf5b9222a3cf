"""Helpers a launcher runs beside the script (sshd, a TensorFlow parameter server): each in its
own process group, stopped with the whole group when the job ends."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from pathlib import Path

_STOP_WAIT_S = 5.0


def start(command: list[str], env: Mapping[str, str], cwd: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        command, env=dict(env), cwd=None if cwd is None else str(cwd), process_group=0, close_fds=True
    )


def stop(child: subprocess.Popen) -> None:
    """SIGTERM to the group, then SIGKILL if it lingers. The supervision loop may have reaped
    the child already (it reaps every child), so a vanished process is not an error."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(child.pid, signum)
        except (ProcessLookupError, PermissionError):
            return
        try:
            child.wait(timeout=_STOP_WAIT_S)
            return
        except subprocess.TimeoutExpired:
            continue
        except ChildProcessError:
            return
