"""What the drain and the connection limits need from the kernel: how many client connections
are open on the server port, and an open-file limit that fits nginx's worker_connections."""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

_TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))
_ESTABLISHED = "01"
_CLOSE_WAIT = "08"  # the client closed; nginx has not yet: still nginx's connection


def open_client_connections(port: int, tables: tuple[Path, ...] = _TCP_TABLES) -> int | None:
    """Connections accepted (or ready to be) on `port` in this network namespace; None when the
    kernel's tables cannot be read (then the drain simply runs its full window)."""
    suffix = f":{port:04X}"
    count = 0
    found_table = False
    for table in tables:
        try:
            with table.open() as lines:
                next(lines, None)  # header
                found_table = True
                for line in lines:
                    fields = line.split(None, 4)
                    if len(fields) > 3 and fields[1].endswith(suffix) and fields[3] in (_ESTABLISHED, _CLOSE_WAIT):
                        count += 1
        except OSError:
            continue
    return count if found_table else None


def raise_open_file_limit(wanted: int) -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE towards `wanted` (never above the hard limit) so nginx and
    gunicorn, which inherit it, can hold that many sockets. Returns (soft, hard) afterwards."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def fit_open_file_limit(wanted: int, worker_connections: int, log: Any) -> int:
    """nginx and gunicorn (or the engine) inherit smc's RLIMIT_NOFILE: raise it towards `wanted`,
    say so when the hard limit stops it, and return what nginx's workers may ask for
    (worker_rlimit_nofile above the hard limit fails with a critical line on every start)."""
    soft, hard = raise_open_file_limit(wanted)
    if soft < wanted:
        log.warning("open_file_limit_low", soft=soft, hard=hard, wanted=wanted,
                    why=f"fewer than {worker_connections} client connections fit "
                        "(SMC_NGINX_WORKER_CONNECTIONS); raise it with docker run --ulimit nofile=N:N")
    return min(soft, wanted)
