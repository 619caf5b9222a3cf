"""GPU, Neuron core and CPU counts for SM_NUM_GPUS, SM_NUM_NEURONS and SM_NUM_CPUS.

GPUs and Neuron cores are counted as sagemaker-training does (nvidia-smi --list-gpus,
neuron-ls -j), but the tools are looked up on PATH first, so a CPU image spawns nothing.
CPUs are the CPUs this process may actually use: the smallest of the host count
(what the toolkit reports), the scheduler affinity (taskset, docker --cpuset-cpus) and the
cgroup CPU quota (docker --cpus), so a script sizing its worker pool from SM_NUM_CPUS does not
oversubscribe a limited container. On a SageMaker instance all three agree.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

_TOOL_TIMEOUT_S = 30.0
_CGROUP_ROOT = Path("/sys/fs/cgroup")


def num_gpus(environ: Mapping[str, str]) -> int:
    tool = shutil.which("nvidia-smi", path=environ.get("PATH"))
    if tool is None:
        return 0
    output = _run([tool, "--list-gpus"], environ)
    return sum(1 for line in output.split("\n") if line.startswith("GPU "))


def num_neurons(instance_type: str, environ: Mapping[str, str]) -> int:
    if "trn2.48xlarge" in instance_type:
        return 64  # as the toolkit: neuron-ls is not reliable there
    tool = shutil.which("neuron-ls", path=environ.get("PATH"))
    if tool is None:
        return 0
    try:
        devices = json.loads(_run([tool, "-j"], environ) or "[]")
        return sum(int(d.get("nc_count", 0)) for d in devices if isinstance(d, dict))
    except (ValueError, TypeError):
        return 0


def num_cpus(cgroup_root: Path = _CGROUP_ROOT) -> int:
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


def _run(argv: list[str], environ: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(
            argv, env=dict(environ), capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""
