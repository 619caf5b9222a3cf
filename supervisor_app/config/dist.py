"""Settings of multi-host training jobs (MPI, torchrun, parameter servers), read by
supervisor_app/train/launchers."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor_app.config.core import Config
from supervisor_app.config.settings import (
    Setting,
    parse_positive_int,
    parse_seconds,
    parse_str,
    read_settings,
)

DIST_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "peer_wait_s",
        ("SMC_PEER_WAIT_SECONDS",),
        parse_seconds,
        600.0,
        "Distributed jobs: how long to wait for every peer host to resolve and answer on its port "
        "(SSH for MPI) before failing with the name of the peer that never came.",
        "train-distributed",
    ),
    Setting(
        "ssh_port",
        ("SMC_MPI_SSH_PORT",),
        parse_positive_int,
        22,
        "MPI jobs: the port of the sshd smc starts on every host (from the image's openssh-server).",
        "train-distributed",
    ),
    Setting(
        "ssh_key_file",
        ("SMC_MPI_SSH_KEY_FILE",),
        parse_str,
        "",
        "MPI jobs: an OpenSSH private key (unencrypted, the same file on every host, e.g. a mounted "
        "secret) that the hosts use to log in to each other. Default: a key derived from the job "
        "(see SMC_MPI_SSH_SECRET).",
        "train-distributed",
    ),
    Setting(
        "ssh_secret",
        ("SMC_MPI_SSH_SECRET",),
        parse_str,
        "",
        "MPI jobs without SMC_MPI_SSH_KEY_FILE: a secret, the same on every host, mixed into the "
        "derived SSH key. Without it the key follows from the job name and host names alone, so "
        "anyone who can reach port 22 on the job's network and knows them could log in.",
        "train-distributed",
    ),
    Setting(
        "master_lost_s",
        ("SMC_MPI_MASTER_LOST_SECONDS",),
        parse_seconds,
        10.0,
        "MPI workers: how long the master's SSH port may stay silent before the worker gives up "
        "on the job and exits non-zero.",
        "train-distributed",
    ),
)


@dataclass(frozen=True)
class DistConfig:
    peer_wait_s: float
    ssh_port: int
    ssh_key_file: str
    ssh_secret: str
    master_lost_s: float


def load_dist_config(config: Config) -> DistConfig:
    return DistConfig(**read_settings(DIST_SETTINGS, config.environ))
