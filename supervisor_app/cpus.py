"""CPUs this container may actually use: the smallest of the host count, the scheduler affinity
(taskset, docker --cpuset-cpus) and the cgroup CPU quota (docker --cpus). Sizing worker pools from
it does not oversubscribe a limited container; on a SageMaker instance all three agree."""

from __future__ import annotations

import math
import os
from pathlib import Path

_CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cpus(cgroup_root: Path = _CGROUP_ROOT) -> int:
    counts = [os.cpu_count() or 1]
    if hasattr(os, "sched_getaffinity"):
        counts.append(len(os.sched_getaffinity(0)))
    quota = cgroup_cpu_limit(cgroup_root)
    if quota is not None:
        counts.append(quota)
    return max(1, min(counts))


def cgroup_cpu_limit(root: Path = _CGROUP_ROOT) -> int | None:
    """CPUs allowed by the cgroup quota, rounded up; None when unlimited or unknown."""
    try:
        fields = (root / "cpu.max").read_text().split()  # cgroup v2: "max 100000" or "200000 100000"
        if len(fields) == 2 and fields[0] != "max":
            return max(1, math.ceil(int(fields[0]) / int(fields[1])))
        return None
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())  # cgroup v1; -1 = unlimited
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    if quota <= 0 or period <= 0:
        return None
    return max(1, math.ceil(quota / period))
