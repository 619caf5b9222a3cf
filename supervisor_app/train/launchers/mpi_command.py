"""The mpirun command line of the MPI master, option for option as sagemaker-training 5.x builds it
(the differential test compares it with the toolkit's MasterRunner):

    mpirun --host algo-1:8,algo-2:8 -np 16 --allow-run-as-root --display-map --tag-output
      -mca btl_tcp_if_include IF -mca oob_tcp_if_include IF -mca plm_rsh_no_tree_spawn 1
      -bind-to none -map-by slot -mca pml ob1 -mca btl ^openib -mca orte_abort_on_non_zero_status 1
      -mca btl_vader_single_copy_mechanism none -x NCCL_MIN_NRINGS=4 -x NCCL_SOCKET_IFNAME=IF
      -x NCCL_DEBUG=INFO -x LD_LIBRARY_PATH -x PATH <custom options> [EFA -x ...] [-x AWS_*]
      -x SM_... <program>

Differences, on purpose: no `-x LD_PRELOAD=gethostname.so` (the toolkit's C shim that makes
gethostname() return the SageMaker host name; smc ships no shared library), and
`-x PYTHONPATH -x PYTHONUNBUFFERED` so ranks on other hosts import from the code dir and log at
once, as ranks on the master do.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from supervisor_app.train.cluster import Cluster
from supervisor_app.interpreter import Interpreter
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers.efa import EFA_NCCL_INSTANCES, EFA_RDMA_INSTANCES

CUSTOM_OPTIONS = "sagemaker_mpi_custom_mpi_options"
NUM_PROCESSES = "sagemaker_mpi_num_processes"
DEFAULT_NCCL_DEBUG = "INFO"
_CREDENTIALS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
EXTRA_EXPORTS = ("PYTHONPATH", "PYTHONUNBUFFERED")


def num_processes(cluster: Cluster, framework: Mapping[str, Any]) -> int:
    raw = framework.get(NUM_PROCESSES)
    if raw:  # the toolkit's `or`: 0 and "" mean "not set"
        return int(raw)
    return cluster.processes_per_host * len(cluster.hosts)


def split_custom_options(text: str) -> tuple[str, list[str]]:
    """`--NCCL_DEBUG X` (or --NCCL_DEBUG=X) replaces the default; every other word passes through.
    Words are split on whitespace, as the toolkit does (no shell quoting)."""
    nccl_debug = DEFAULT_NCCL_DEBUG
    rest: list[str] = []
    words = text.split()
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--NCCL_DEBUG" and i + 1 < len(words):
            nccl_debug = words[i + 1]
            i += 2
            continue
        if word.startswith("--NCCL_DEBUG="):
            nccl_debug = word.partition("=")[2]
        else:
            rest.append(word)
        i += 1
    return nccl_debug, rest


def program_command(kind: Kind, name: str, args: list[str], python: Interpreter) -> list[str]:
    """What each rank runs: python -m mpi4py (aborts the job on an uncaught exception) for Python
    entry points, /bin/sh -c './name args' for the others, as in the toolkit."""
    if kind is Kind.PACKAGE:
        return [*python.argv, "-m", "mpi4py", "-m", name.removesuffix(".py"), *args]
    if kind is Kind.PROGRAM:
        return [*python.argv, "-m", "mpi4py", name, *args]
    return ["/bin/sh", "-c", f"./{shlex.quote(name)} {' '.join(shlex.quote(a) for a in args)}"]


def mpirun_command(
    cluster: Cluster,
    framework: Mapping[str, Any],
    exported: Iterable[str],
    environ: Mapping[str, str],
    program: list[str],
) -> list[str]:
    ppn = cluster.processes_per_host
    hosts = list(cluster.hosts) if ppn == 1 else [f"{h}:{ppn}" for h in cluster.hosts]
    nccl_debug, custom = split_custom_options(str(framework.get(CUSTOM_OPTIONS) or ""))
    interface = cluster.network_interface
    command = [
        "mpirun",
        "--host", ",".join(hosts),
        "-np", str(num_processes(cluster, framework)),
        "--allow-run-as-root",
        "--display-map",
        "--tag-output",
        "-mca", "btl_tcp_if_include", interface,
        "-mca", "oob_tcp_if_include", interface,
        "-mca", "plm_rsh_no_tree_spawn", "1",
        "-bind-to", "none",
        "-map-by", "slot",
        "-mca", "pml", "ob1",
        "-mca", "btl", "^openib",
        "-mca", "orte_abort_on_non_zero_status", "1",
        "-mca", "btl_vader_single_copy_mechanism", "none",
        "-x", "NCCL_MIN_NRINGS=4",
        "-x", f"NCCL_SOCKET_IFNAME={interface}",
        "-x", f"NCCL_DEBUG={nccl_debug}",
        "-x", "LD_LIBRARY_PATH",
        "-x", "PATH",
    ]  # fmt: skip
    command += custom
    if cluster.instance_type in EFA_NCCL_INSTANCES:
        command += ["-x", "FI_PROVIDER=efa", "-x", "NCCL_PROTO=simple"]
    if cluster.instance_type in EFA_RDMA_INSTANCES:
        command += ["-x", "FI_EFA_USE_DEVICE_RDMA=1"]
    for name in _CREDENTIALS:
        if name in environ:
            command += ["-x", name]
    for name in exported:
        command += ["-x", name]
    return command + program
