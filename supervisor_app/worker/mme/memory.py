"""How much memory the container uses and may use, for the 507 of POST /models.

Usage is the cgroup's working set (memory.current minus inactive file cache, as the kubelet
counts it: page cache the kernel can drop does not stop a load). Without a cgroup limit the
machine's MemTotal and MemTotal - MemAvailable stand in. SMC_MME_MEMORY_LIMIT_MB overrides the
limit; then usage is what this gunicorn's processes hold (RSS of the master and its workers), so
the setting also works where the cgroup holds other things.
"""

from __future__ import annotations

import os
from pathlib import Path

MIB = 1024 * 1024
_CGROUP = Path("/sys/fs/cgroup")


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo() -> dict[str, int]:
    values = {}
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            key, _, rest = line.partition(":")
            values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return values


def _cgroup_usage() -> tuple[int | None, int | None]:
    """(limit, working set) of cgroup v2 at /sys/fs/cgroup, each None when unknown."""
    limit = _read_int(_CGROUP / "memory.max")
    current = _read_int(_CGROUP / "memory.current")
    if current is not None:
        try:
            for line in (_CGROUP / "memory.stat").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "inactive_file":
                    current = max(current - int(value), 0)
        except (OSError, ValueError):
            pass
    return limit, current


def rss_bytes(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def server_rss_bytes() -> int:
    """RSS of this worker's gunicorn master and all its children."""
    master = os.getppid()
    total = rss_bytes(master)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master:
            total += rss_bytes(int(stat.parent.name))
    return total


def budget(limit_mb: int | None, headroom_mb: int) -> tuple[int, int]:
    """(bytes in use, bytes loads may reach): a load is refused when use would pass the second."""
    if limit_mb is not None:
        return server_rss_bytes(), max(limit_mb - headroom_mb, 0) * MIB
    limit, used = _cgroup_usage()
    info = _meminfo()
    total = info.get("MemTotal", 0)
    if limit is None or (total and limit > total):
        limit = total
    if used is None:
        used = total - info.get("MemAvailable", total)
    return used, max(limit - headroom_mb * MIB, 0)
