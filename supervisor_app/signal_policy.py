"""What each signal to `smc serve` means, decided once (docs/reliability.md, "Other signals").

A signal's default action ends a process at once: without a decision, SIGHUP, SIGUSR1 and SIGQUIT
cut the requests in flight, logged nothing and left the run directory behind.

- SIGTERM, SIGINT, SIGQUIT: the drained stop. QUIT is nginx's and gunicorn's graceful stop (and a
  common STOPSIGNAL), so it means the same here.
- SIGHUP, SIGUSR1, SIGUSR2: ignored, with a `signal_ignored` line saying why. smc reads its
  settings once at start, so there is nothing to reload (HUP); its logs are its stdout and stderr,
  so there is no file to reopen (USR1); and no binary upgrade in place (USR2). A HUP from a closing
  terminal must not stop a server either.
"""

from __future__ import annotations

import signal

from supervisor_app import process

STOP = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
IGNORED = {
    signal.SIGHUP: "smc reads its settings once at start: there is nothing to reload (restart the container "
                   "to change them)",
    signal.SIGUSR1: "smc logs to stdout and stderr: there is no log file to reopen",
    signal.SIGUSR2: "smc does not upgrade itself in place",
}


def install_before_loop() -> None:
    """Until the supervision loop takes them over: a stop signal ends start-up (StopRequested,
    exit 128+n, nothing to drain yet) and the ignored ones are ignored."""
    process.stop_on_signals(STOP)
    for signum in IGNORED:
        signal.signal(signum, signal.SIG_IGN)


__all__ = ["IGNORED", "STOP", "install_before_loop"]
