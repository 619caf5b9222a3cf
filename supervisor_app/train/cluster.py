"""Who is in the job and whether they are there: the topology from resourceconfig.json, the
launch view of it (the master, processes per host), and the wait for peers with a deadline and a
log line per peer.

The facts follow sagemaker-training 5.x: the master is the first of the distribution hosts
(hosts of the instance groups in `sagemaker_distribution_instance_groups`, else every host of a
job without instance groups); the current instance group is distributed when that list names
it, and by default when any distribution flag is set; a host runs one process per GPU, else per
Neuron core, else one, and the `sagemaker_mpi_num_of_processes_per_host` hyperparameter
overrides that.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor_app import rootfs
from supervisor_app.errors import BootError, ConfigError
from supervisor_app.train.resources import Resources

PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
DISTRIBUTION_GROUPS = "sagemaker_distribution_instance_groups"
DEFAULT_INSTANCE_TYPE = "local"
DEFAULT_INSTANCE_GROUP = "homogeneousCluster"
DEFAULT_INTERFACE = "eth0"
# Framework parameters that make the current instance group a distributed one.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)
_PROBE_TIMEOUT_S = 1.0
_MAX_DELAY_S = 0.25  # peers come up within a second of each other: notice at once, without spinning


@dataclass(frozen=True)
class Topology:
    """Where this host stands in the job. Values the toolkit passes on as the JSON gave them
    (group hosts, the distribution groups, topology) are kept as given, so SM_TRAINING_ENV
    renders them byte for byte as the toolkit does."""

    hosts: tuple[str, ...]  # every host of the job, in resourceconfig.json's order
    current_host: str
    current_group: str
    current_group_hosts: Any
    group_names: tuple[str, ...]
    groups: Mapping[str, Any]  # instance group name -> its resourceconfig.json object
    distribution_groups: Any  # the instance groups that launch (a list of names)
    distribution_hosts: tuple[str, ...]
    master: str
    instance_type: str
    network_interface: str
    topology: Any

    @property
    def distributed(self) -> bool:
        """Only hosts of a distributed instance group launch."""
        return self.current_group in self.distribution_groups


def topology_of(resource_config: Mapping[str, Any], framework: Mapping[str, Any]) -> Topology:
    rc = resource_config
    hosts = tuple(rc["hosts"])
    current_group = rc.get("current_group_name", DEFAULT_INSTANCE_GROUP)
    groups_config = rc.get("instance_groups", [])
    groups = {g["instance_group_name"]: g for g in groups_config}
    distribution_groups = framework.get(DISTRIBUTION_GROUPS)
    if distribution_groups is None:
        enabled = any(framework.get(flag, False) for flag in _DISTRIBUTION_FLAGS)
        distribution_groups = [current_group] if enabled else []
    if groups_config:
        distribution_hosts = tuple(
            h for g in groups_config if g["instance_group_name"] in distribution_groups for h in g["hosts"]
        )
    else:
        distribution_hosts = hosts
    return Topology(
        hosts=hosts,
        current_host=rc["current_host"],
        current_group=current_group,
        current_group_hosts=groups.get(current_group, {}).get("hosts", []),
        group_names=tuple(g["instance_group_name"] for g in groups_config),
        groups=groups,
        distribution_groups=distribution_groups,
        distribution_hosts=distribution_hosts,
        master=distribution_hosts[0] if distribution_hosts else hosts[0],
        instance_type=rc.get("current_instance_type", DEFAULT_INSTANCE_TYPE),
        network_interface=rc.get("network_interface_name", DEFAULT_INTERFACE),
        topology=rc.get("topology", []),
    )


@dataclass(frozen=True)
class Cluster:
    hosts: tuple[str, ...]  # the distribution hosts, in order
    current_host: str
    master: str
    network_interface: str
    processes_per_host: int
    instance_type: str

    @property
    def is_master(self) -> bool:
        return self.current_host == self.master

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(h for h in self.hosts if h != self.current_host)

    def host_of_rank(self, rank: int) -> str | None:
        """Open MPI's -map-by slot fills each host's slots in host order."""
        index = rank // self.processes_per_host
        return self.hosts[index] if 0 <= index < len(self.hosts) else None


def discover(topology: Topology, resources: Resources, framework: Mapping[str, Any]) -> Cluster:
    """The launch view of the topology: the distribution hosts and processes per host."""
    gpus, neurons = resources.num_gpus, resources.num_neurons
    default = gpus if gpus > 0 else neurons if neurons > 0 else 1
    return Cluster(
        hosts=topology.distribution_hosts or topology.hosts,
        current_host=str(topology.current_host),
        master=str(topology.master),
        network_interface=str(topology.network_interface),
        processes_per_host=_positive_int(framework, PROCESSES_PER_HOST, default),
        instance_type=str(topology.instance_type),
    )


def _positive_int(framework: Mapping[str, Any], key: str, default: int) -> int:
    raw = framework.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except (TypeError, ValueError):
        value = 0
    if value < 1 or isinstance(raw, bool):
        raise ConfigError(
            f"hyperparameters.json: key {key!r} must be a whole number of at least 1, found {raw!r}",
            hint=f'e.g. "{key}": "2"',
        )
    return value


def wait_for_names(hosts: list[str], timeout_s: float, log: Any) -> None:
    """Other hosts' DNS names may appear after the container starts (SageMaker documents it)."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.1
    for host in hosts:
        while True:
            try:
                socket.gethostbyname(host)
                break
            except OSError:
                if time.monotonic() + delay_s > deadline:
                    raise _unresolved(host, timeout_s) from None
                log.info("host_not_resolvable_yet", host=host, retry_in_s=delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)


def _unresolved(host: str, timeout_s: float) -> BootError:
    if rootfs.hosts_file_missing():
        # Docker and SageMaker always write /etc/hosts: its absence, not the network, is the cause.
        return BootError(
            f"host {host!r} of resourceconfig.json does not resolve after {timeout_s:g} s, and this root "
            f"has no {rootfs.HOSTS_FILE} (where Docker and SageMaker list the job's hosts)",
            hint=f"create {rootfs.HOSTS_FILE} with `127.0.0.1 localhost` and a line `IP NAME` for each host "
            "of resourceconfig.json, or run the container with Docker, which writes it",
        )
    return BootError(
        f"host {host!r} of resourceconfig.json does not resolve after {timeout_s:g} s",
        hint="check the job's network; locally, set SM_STUDIO_LOCAL_MODE=true or add the hosts to /etc/hosts",
    )


def wait_for_peers(peers: tuple[str, ...], port: int, timeout_s: float, log: Any, what: str) -> None:
    """Wait until every peer resolves and accepts a TCP connection on `port`.

    One `peer_waiting` line when a peer is first missing (with the reason), one `peer_ready` line
    when it answers, and a BootError naming every peer that never came."""
    deadline = time.monotonic() + timeout_s
    started = time.monotonic()
    missing = {peer: "" for peer in peers}
    delay_s = 0.05
    while True:
        for peer in list(missing):
            reason = probe(peer, port)
            if reason is None:
                del missing[peer]
                log.info("peer_ready", peer=peer, port=port, waited_s=round(time.monotonic() - started, 3))
            elif reason != missing[peer]:
                log.info("peer_waiting", peer=peer, port=port, reason=reason, deadline_s=timeout_s)
                missing[peer] = reason
        if not missing:
            return
        if time.monotonic() + delay_s > deadline:
            names = ", ".join(f"{peer} ({reason})" for peer, reason in missing.items())
            raise BootError(
                f"peer host(s) never answered on port {port} within {timeout_s:g} s: {names}",
                hint=f"every host must run the same image with `smc train`; {what}. "
                "Raise SMC_PEER_WAIT_SECONDS if hosts start slowly",
            )
        time.sleep(delay_s)
        delay_s = min(delay_s * 2, _MAX_DELAY_S)


def _greet(sock: socket.socket) -> None:
    """An SSH server greets first; answering its greeting keeps it from logging every probe as
    a broken connection. Other servers say nothing and are left alone."""
    sock.settimeout(0.2)
    try:
        if sock.recv(256).startswith(b"SSH-"):
            sock.sendall(b"SSH-2.0-smc-probe\r\n")
    except OSError:
        pass


def probe(host: str, port: int, timeout_s: float = _PROBE_TIMEOUT_S) -> str | None:
    """None when host:port accepts a connection, else why not (for the log)."""
    try:
        address = socket.gethostbyname(host)
    except OSError:
        return "name does not resolve"
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as sock:
            _greet(sock)
            return None
    except TimeoutError:
        return "connection timed out"
    except OSError as exc:
        return exc.strerror or str(exc)
