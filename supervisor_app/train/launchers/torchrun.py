"""torchrun for `sagemaker_torch_distributed_enabled`, as sagemaker-training 5.x builds it:

    torchrun --nnodes N --nproc_per_node P [--master_addr M --master_port 7777 --node_rank I] script args

(the multi-node flags only when N > 1; `neuron_parallel_compile` in front when
RUN_NEURON_PARALLEL_COMPILE=1), with NCCL_SOCKET_IFNAME, NCCL_PROTO=simple and the EFA variables
the toolkit sets. smc also exports MASTER_ADDR and MASTER_PORT, as the PyTorch containers do.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping

from supervisor_app.errors import UserCodeError
from supervisor_app.train.cluster import Cluster
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers.efa import EFA_NCCL_INSTANCES, EFA_RDMA_INSTANCES

MASTER_PORT = "7777"
NEURON_COMPILE = "RUN_NEURON_PARALLEL_COMPILE"


def torchrun_command(
    cluster: Cluster, kind: Kind, name: str, args: list[str], environ: Mapping[str, str]
) -> list[str]:
    if kind is not Kind.PROGRAM:
        raise UserCodeError(
            f"sagemaker_torch_distributed_enabled needs a Python script as entry point, got {name!r} ({kind.value})",
            hint="use a train.py script; torchrun cannot start packages or shell scripts",
        )
    command = ["neuron_parallel_compile"] if environ.get(NEURON_COMPILE) == "1" else []
    command += [
        "torchrun",
        "--nnodes",
        str(len(cluster.hosts)),
        "--nproc_per_node",
        str(cluster.processes_per_host),
    ]
    if len(cluster.hosts) > 1:
        command += [
            "--master_addr", cluster.master,
            "--master_port", MASTER_PORT,
            "--node_rank", str(cluster.hosts.index(cluster.current_host)),
        ]  # fmt: skip
    return [*command, name, *args]


def torchrun_environment(cluster: Cluster) -> dict[str, str]:
    env = {
        "NCCL_SOCKET_IFNAME": cluster.network_interface,
        "NCCL_PROTO": "simple",
        "MASTER_ADDR": cluster.master,
        "MASTER_PORT": MASTER_PORT,
    }
    if cluster.instance_type in EFA_NCCL_INSTANCES:
        env["FI_PROVIDER"] = "efa"
    if cluster.instance_type in EFA_RDMA_INSTANCES:
        env["FI_EFA_USE_DEVICE_RDMA"] = "1"
        env["RDMAV_FORK_SAFE"] = "1"
    return env


def require_torchrun(command: list[str], path_env: str | None) -> None:
    if shutil.which(command[0], path=path_env) is None:
        raise UserCodeError(
            f"sagemaker_torch_distributed_enabled is set, but {command[0]} is not on PATH",
            hint="install torch in the image (pip install torch puts torchrun on PATH)",
        )
