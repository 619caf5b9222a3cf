"""Launchers for distributed jobs: which one a job asks for, as sagemaker-training decides it.

- MPI (`sagemaker_mpi_enabled` and the current instance group distributed): mpi_job.py
- torchrun (`sagemaker_torch_distributed_enabled`): torchrun.py
- parameter servers (TensorFlow): a ps task beside the script, parameter_server.py
- TF_CONFIG for parameter servers and multi-worker mirrored: tf_config.py
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

from supervisor_app.train.cluster import Topology

MPI_ENABLED = "sagemaker_mpi_enabled"
TORCH_DISTRIBUTED_ENABLED = "sagemaker_torch_distributed_enabled"
PARAMETER_SERVER_ENABLED = "sagemaker_parameter_server_enabled"
MULTI_WORKER_MIRRORED_ENABLED = "sagemaker_multi_worker_mirrored_strategy_enabled"


class Launcher(enum.Enum):
    PROCESS = "process"
    MPI = "mpi"
    TORCHRUN = "torchrun"
    PARAMETER_SERVER = "parameter_server"


def choose(framework: Mapping[str, Any], topology: Topology) -> Launcher:
    """MPI first, as in sagemaker-training's `train`; then torchrun (the PyTorch containers'
    order puts MPI before it too); then TensorFlow parameter servers (more than one host, as in
    the TF containers). Only hosts of a distributed instance group launch."""
    distributed = topology.distributed
    if framework.get(MPI_ENABLED) and distributed:
        return Launcher.MPI
    if framework.get(TORCH_DISTRIBUTED_ENABLED) and distributed:
        return Launcher.TORCHRUN
    if framework.get(PARAMETER_SERVER_ENABLED) and distributed and len(topology.hosts) > 1:
        return Launcher.PARAMETER_SERVER
    return Launcher.PROCESS


def tf_config_env(framework: Mapping[str, Any], topology: Topology) -> dict[str, str]:
    """TF_CONFIG for the script, where sagemaker-tensorflow-training would set it."""
    from supervisor_app.train.launchers import tf_config

    if not topology.distributed:
        return {}
    hosts = list(topology.distribution_hosts)
    current = str(topology.current_host)
    if framework.get(PARAMETER_SERVER_ENABLED) and len(topology.hosts) > 1:
        return {"TF_CONFIG": tf_config.render(tf_config.parameter_server(hosts, current))}
    if framework.get(MULTI_WORKER_MIRRORED_ENABLED):
        return {"TF_CONFIG": tf_config.render(tf_config.multi_worker_mirrored(hosts, current))}
    return {}
