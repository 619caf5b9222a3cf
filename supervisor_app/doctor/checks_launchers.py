"""Checks for distributed jobs: does the image bring what the launcher the job's plan chose needs
(MPI: sshd, ssh, mpirun, orted; torchrun: torchrun), and is the SSH key set-up sound."""

from __future__ import annotations

import shutil
from pathlib import Path

from supervisor_app import process
from supervisor_app.config import Config
from supervisor_app.config.dist import load_dist_config
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.errors import ConfigError
from supervisor_app.train.launchers import Launcher, mpi_job, ssh
from supervisor_app.train.plan import TrainPlan


def check_launchers(config: Config, plan: TrainPlan | None) -> list[Finding]:
    if plan is None:
        return []
    path_env = process.foreign_env(config.environ).get("PATH")
    findings: list[Finding] = []
    if plan.launcher is Launcher.MPI:
        findings += _check_mpi(config, path_env)
    if plan.launcher is Launcher.TORCHRUN:
        found = shutil.which("torchrun", path=path_env)
        findings.append(
            ok("torchrun", f"torchrun found at {found}")
            if found
            else fail(
                "torchrun",
                "sagemaker_torch_distributed_enabled is set, but torchrun is not on PATH",
                "install torch in the image (pip install torch puts torchrun on PATH)",
            )
        )
    return findings


def _check_mpi(config: Config, path_env: str | None) -> list[Finding]:
    missing = mpi_job.missing_programs(path_env)
    if missing:
        findings = [
            fail(
                "mpi_programs",
                f"sagemaker_mpi_enabled is set, but the image lacks {' and '.join(missing)} "
                "(sshd, ssh, mpirun and orted must be installed)",
                f"RUN apt-get update && apt-get install -y --no-install-recommends {' '.join(missing)}",
            )
        ]
    else:
        findings = [
            ok(
                "mpi_programs",
                f"sshd at {ssh.find_sshd(path_env)}, mpirun at {shutil.which('mpirun', path=path_env)}",
            )
        ]
    try:
        dist = load_dist_config(config)
    except ConfigError as exc:
        return [*findings, fail("mpi_ssh_key", exc.message, exc.hint or "")]
    if dist.ssh_key_file:
        key = Path(dist.ssh_key_file)
        if not key.is_file():
            findings.append(
                fail(
                    "mpi_ssh_key",
                    f"SMC_MPI_SSH_KEY_FILE={key} does not exist",
                    "mount the same unencrypted OpenSSH private key on every host, or unset it",
                    str(key),
                )
            )
        else:
            findings.append(ok("mpi_ssh_key", f"hosts log in to each other with the key in {key}", str(key)))
    elif dist.ssh_secret:
        findings.append(ok("mpi_ssh_key", "SSH key derived from the job, the hosts and SMC_MPI_SSH_SECRET"))
    else:
        findings.append(
            warn(
                "mpi_ssh_key",
                "SSH key derived from the job name and host names only: anyone who reaches port "
                f"{dist.ssh_port} on the job's network and knows them can log in",
                "set SMC_MPI_SSH_SECRET (the same on every host) or mount a key as SMC_MPI_SSH_KEY_FILE",
            )
        )
    return findings
