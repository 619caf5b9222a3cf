"""Exit codes, in the tradition of sysexits, tini and gunicorn's arbiter."""

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
