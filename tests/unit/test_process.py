"""Process duties: child environments, wait statuses, causes in words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from supervisor_app import process


def test_foreign_env_restores_the_original_library_path_and_drops_bundle_vars():
    env = {
        "LD_LIBRARY_PATH": "/tmp/_MEI123",
        "LD_LIBRARY_PATH_ORIG": "/usr/local/lib",
        "_PYI_ARCHIVE_FILE": "/usr/local/bin/smc",
        "_PYI_PARENT_PROCESS_LEVEL": "1",
        "PATH": "/usr/bin",
    }
    assert process.foreign_env(env) == {"LD_LIBRARY_PATH": "/usr/local/lib", "PATH": "/usr/bin"}


def test_foreign_env_drops_the_bundle_path_when_there_was_none():
    env = {"LD_LIBRARY_PATH": "/tmp/_MEI123", "LD_LIBRARY_PATH_ORIG": "", "PATH": "/bin"}
    assert process.foreign_env(env) == {"PATH": "/bin"}


def test_self_env_keeps_bundle_vars_for_fast_reexec():
    env = {"_PYI_ARCHIVE_FILE": "x", "LD_LIBRARY_PATH": "/tmp/_MEI1"}
    assert process.self_env(env) == env


def _status_of(code: str) -> int:
    child = subprocess.Popen([sys.executable, "-c", code])
    _, status = os.waitpid(child.pid, 0)
    return status


def test_exit_code_follows_the_shell_convention():
    assert process.exit_code(_status_of("raise SystemExit(3)")) == 3
    assert process.exit_code(_status_of("import os, signal; os.kill(os.getpid(), signal.SIGKILL)")) == 137


def test_describe_exit_names_the_likely_cause():
    assert process.describe_exit(3) == "exit code 3"
    assert process.describe_exit(137).startswith("killed by SIGKILL: likely out of memory")
    assert process.describe_exit(128 + signal.SIGTERM) == "killed by SIGTERM"
    assert "command not found" in process.describe_exit(127)


def test_reap_collects_exited_children():
    pids = {subprocess.Popen([sys.executable, "-c", "pass"]).pid for _ in range(3)}
    reaped = set()
    while len(reaped) < 3:
        reaped |= {pid for pid, _ in process.reap(block=True)}
    assert pids <= reaped
