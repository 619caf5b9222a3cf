"""Who is in the job and whether they are there: hosts from resourceconfig.json, the master,
processes per host, and the wait for peers with a deadline and a log line per peer.

The facts follow sagemaker-training 5.x: the master is the first of the distribution hosts
(hosts of the instance groups in `sagemaker_distribution_instance_groups`, else every host);
a host runs one process per GPU, else per Neuron core, else one, and the
`sagemaker_mpi_num_of_processes_per_host` hyperparameter overrides that.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor_app.errors import BootError, ConfigError

PROCESSES_PER_HOST = "sagemaker_mpi_num_of_processes_per_host"
_PROBE_TIMEOUT_S = 1.0
_MAX_DELAY_S = 0.25  # peers come up within a second of each other: notice at once, without spinning


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


def discover(training_env: Mapping[str, Any], framework: Mapping[str, Any]) -> Cluster:
    """Built from the training environment smc already exports (SM_TRAINING_ENV)."""
    hosts = tuple(training_env["distribution_hosts"]) or tuple(training_env["hosts"])
    gpus, neurons = int(training_env["num_gpus"]), int(training_env["num_neurons"])
    default = gpus if gpus > 0 else neurons if neurons > 0 else 1
    return Cluster(
        hosts=hosts,
        current_host=str(training_env["current_host"]),
        master=str(training_env["master_hostname"]),
        network_interface=str(training_env["network_interface_name"]),
        processes_per_host=_positive_int(framework, PROCESSES_PER_HOST, default),
        instance_type=str(training_env["current_instance_type"]),
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
