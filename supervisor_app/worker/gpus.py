"""GPUs of the host, and one GPU per gunicorn worker.

The count comes from `nvidia-smi --query-gpu=index` when it is on PATH (what SageMaker's GPU hosts
have), else from the driver's /proc/driver/nvidia/gpus entries; anything failing means no GPUs, so
a broken or absent nvidia-smi leaves the CPU defaults. With GPUs the default worker count is the
GPU count (SAGEMAKER_MODEL_SERVER_WORKERS still wins; more workers share GPUs evenly) and each
worker is pinned to one device:
CUDA_VISIBLE_DEVICES=<that GPU>, so inside the worker it is device 0, and
context.system_properties["gpu_id"] is 0 too. Code written for multi-model-server, which does
`torch.device(f"cuda:{gpu_id}")`, thus lands on the worker's own GPU (with gpu_id 2 under
CUDA_VISIBLE_DEVICES=2 it would name a device that is not visible).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

_PROC_GPUS = Path("/proc/driver/nvidia/gpus")
_NVIDIA_SMI_TIMEOUT_S = 10.0
ENV = "SMC_SERVE_GPUS"  # detected device indices, comma-separated, handed to the gunicorn master


@dataclass(frozen=True)
class Detected:
    devices: tuple[str, ...]  # CUDA device indices as nvidia-smi numbers them
    source: str  # "nvidia-smi", "/proc/driver/nvidia/gpus", or "none: <why>"


def detect(environ: Mapping[str, str], proc_dir: Path = _PROC_GPUS) -> Detected:
    """The host's GPUs; never raises."""
    why = "nvidia-smi not on PATH"
    try:
        result = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader,nounits"],
            env=dict(environ), capture_output=True, text=True, timeout=_NVIDIA_SMI_TIMEOUT_S, check=False,
        )
    except FileNotFoundError:
        pass
    except (OSError, subprocess.TimeoutExpired) as exc:
        why = f"nvidia-smi failed: {exc}"
    else:
        if result.returncode == 0:
            devices = tuple(line.strip() for line in result.stdout.splitlines() if line.strip().isdigit())
            return Detected(devices, "nvidia-smi" if devices else "none: nvidia-smi lists no GPUs")
        why = f"nvidia-smi exited {result.returncode}: {(result.stderr or result.stdout).strip()[:200]}"
    try:
        entries = sorted(p.name for p in proc_dir.iterdir())
    except OSError:
        entries = []
    if entries:
        return Detected(tuple(str(i) for i in range(len(entries))), str(proc_dir))
    return Detected((), f"none: {why}")


def pick(devices: tuple[str, ...], in_use: Iterable[str]) -> str:
    """The GPU for a new worker: the one fewest live workers use, lowest index first. A respawned
    worker thus takes the GPU its predecessor freed; more workers than GPUs share them evenly."""
    load = {device: 0 for device in devices}
    for device in in_use:
        if device in load:
            load[device] += 1
    return min(devices, key=lambda device: load[device])


def parse_env(environ: Mapping[str, str]) -> tuple[str, ...]:
    raw = environ.get(ENV, "")
    return tuple(d for d in raw.split(",") if d.strip())


def pin_this_worker(device: str) -> None:
    """In the forked worker, before the model loads: only its GPU is visible to CUDA."""
    os.environ["CUDA_VISIBLE_DEVICES"] = device
