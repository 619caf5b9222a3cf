"""Which process of the engine's group listens on its port: the one that serves.

The engine's command may start a launcher that is not the server (`smc python engine.py`: the
onefile bootloader, then Python; `sh -c "..."`; a wrapper script), so the started pid is not the
one a `kill` or a profiler needs. Linux only: /proc/net/tcp{,6} gives the listening socket's inode,
/proc/PID/fd tells whose it is.
"""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def serving_pid(port: int, pgid: int) -> int | None:
    """The pid in process group pgid that holds the socket listening on port, or None."""
    wanted = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    if not wanted:
        return None
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if os.getpgid(pid) != pgid:
                continue
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in wanted:
                    return pid
        except OSError:
            continue  # gone, or not ours to look into
    return None


__all__ = ["serving_pid"]
