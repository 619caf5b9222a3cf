"""Exit codes, in the tradition of sysexits, tini and gunicorn's arbiter, and their words."""

import os
import signal

OK = 0
FAILURE = 1  # the job or the server failed; the reason is in the log (and the failure file)
USAGE = 2  # bad command line
BOOT = 3  # smc could not start a child it needs (missing binary, port taken)
APP_LOAD = 4  # user code could not be loaded (import error, missing function)
CONFIG = 5  # configuration (environment or /opt/ml files) is invalid
GRACE_EXPIRED = 124  # serve: the stop grace ran out and in-flight requests were cut (as timeout(1))
NOT_EXECUTABLE = 126
NOT_FOUND = 127
SIGNAL_BASE = 128  # 128 + n: stopped by signal n, as a shell reports it


def from_signal(signum: int) -> int:
    return SIGNAL_BASE + signum


def exit_code(status: int) -> int:
    """Shell convention: the exit code, or 128 + n for a child killed by signal n."""
    if os.WIFSIGNALED(status):
        return from_signal(os.WTERMSIG(status))
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return FAILURE


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def describe_exit(code: int) -> str:
    """An exit code in words: 'exit code 3', 'killed by SIGKILL'. Who sent a SIGKILL (smc, the OOM
    killer, another process) is supervision/causes.py's to say, from the memory cgroup's counter."""
    if code > SIGNAL_BASE and code - SIGNAL_BASE < signal.NSIG:
        return f"killed by {signal_name(code - SIGNAL_BASE)}"
    if code == NOT_FOUND:
        return "exit code 127: command not found"
    if code == NOT_EXECUTABLE:
        return "exit code 126: not executable"
    return f"exit code {code}"
