"""Process duties: child environments, wait statuses, causes in words."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

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


def test_describe_exit_says_what_the_code_says_and_guesses_no_cause():
    assert process.describe_exit(3) == "exit code 3"
    assert process.describe_exit(137) == "killed by SIGKILL"  # OOM or not: supervision/causes.py, from the counter
    assert process.describe_exit(128 + signal.SIGTERM) == "killed by SIGTERM"
    assert "command not found" in process.describe_exit(127)


def test_reap_collects_exited_children():
    pids = {subprocess.Popen([sys.executable, "-c", "pass"]).pid for _ in range(3)}
    reaped: set[int] = set()
    deadline = time.monotonic() + 10  # bounded: a reap that never collects them fails, never hangs CI
    while not pids <= reaped and time.monotonic() < deadline:
        reaped |= {pid for pid, _ in process.reap()}  # other tests' stray children may be reaped too
        time.sleep(0.01)
    assert pids <= reaped, f"not reaped within 10 s: {sorted(pids - reaped)}"


def test_fork_call_runs_the_target_like_a_fresh_child(tmp_path):
    """The forked gunicorn master's start: own session, pipes for its output, no inherited fd but
    the kept ones, default signal dispositions, and the target's return value as exit code."""
    from supervisor_app.supervision.children import fork_call

    keep_read, keep_write = os.pipe()
    stray = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(stray, True)
    previous = signal.signal(signal.SIGTERM, lambda s, f: None)

    def target() -> int:
        facts = {
            "session_leader": os.getsid(0) == os.getpid(),
            "kept_open": _is_open(keep_write),
            "stray_closed": not _is_open(stray),
            "sigterm_default": signal.getsignal(signal.SIGTERM) is signal.SIG_DFL,
            "nothing_blocked": not signal.pthread_sigmask(signal.SIG_BLOCK, []),  # blocked across the fork only
        }
        print(facts, flush=True)
        os.write(keep_write, b"ok")
        return 7

    try:
        pid, streams = fork_call(target, (keep_write,), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(stray)
    _, status = os.waitpid(pid, 0)
    out = streams[0][0].read().decode()
    os.close(keep_write)
    assert os.read(keep_read, 10) == b"ok"
    assert process.exit_code(status) == 7
    assert out.strip() == str({"session_leader": True, "kept_open": True, "stray_closed": True,
                               "sigterm_default": True, "nothing_blocked": True})
    assert not signal.pthread_sigmask(signal.SIG_BLOCK, [])  # the parent's mask is back too
    for stream, _ in streams:
        stream.close()


def test_fork_call_reports_a_crash_with_its_traceback_and_exit_1():
    from supervisor_app.supervision.children import fork_call

    def target() -> int:
        raise RuntimeError("the master could not start")

    pid, streams = fork_call(target, (), signal.SIGTERM)
    _, status = os.waitpid(pid, 0)
    err = streams[1][0].read().decode()
    assert process.exit_code(status) == 1
    assert "RuntimeError: the master could not start" in err
    for stream, _ in streams:
        stream.close()


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True
