"""What this host brings: GPU, Neuron core and CPU counts for SM_NUM_GPUS, SM_NUM_NEURONS and
SM_NUM_CPUS, and whether smddprun/smddpmprun are installed.

GPUs and Neuron cores are counted as sagemaker-training does (nvidia-smi --list-gpus,
neuron-ls -j), but the tools are looked up on PATH first, so a CPU image spawns nothing.
CPUs come from supervisor_app.cpus (affinity- and cgroup-aware, shared with serve's worker count).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor_app import cpus, process
from supervisor_app.config.train import TrainConfig

_TOOL_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Resources:
    num_cpus: int
    num_gpus: int
    num_neurons: int
    smddprun_installed: bool = False
    smddpmprun_installed: bool = False


def probe(train: TrainConfig) -> Resources:
    """Counted once per job, with the container's environment (not the bundle's)."""
    foreign = process.foreign_env(train.environ)
    path = foreign.get("PATH")
    instance_type = str(train.resource_config.get("current_instance_type", "local"))
    return Resources(
        num_cpus=cpus.available_cpus(),
        num_gpus=num_gpus(foreign),
        num_neurons=num_neurons(instance_type, foreign),
        smddprun_installed=shutil.which("smddprun", path=path) is not None,
        smddpmprun_installed=shutil.which("smddpmprun", path=path) is not None,
    )


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


def _run(argv: list[str], environ: Mapping[str, str]) -> str:
    try:
        done = subprocess.run(
            argv, env=process.foreign_env(environ), capture_output=True, text=True, timeout=_TOOL_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout if done.returncode == 0 else ""
