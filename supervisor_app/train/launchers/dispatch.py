"""Run a job with the launcher it asked for; command.py calls this for anything but one process."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app.config.dist import DistConfig
from supervisor_app.config.train import TrainConfig
from supervisor_app.train import entry_point, runner
from supervisor_app.train.cluster import Cluster
from supervisor_app.train.entry_point import Kind, Python
from supervisor_app.train.launchers import (
    Launcher,
    background,
    mpi_command,
    mpi_job,
    parameter_server,
    torchrun,
)
from supervisor_app.train.launchers.mpi_job import Result


@dataclass(frozen=True)
class Script:
    kind: Kind
    name: str
    args: list[str]
    python: Python
    code_dir: Path
    env: dict[str, str]  # the script's environment, built on the container's (not the bundle's)
    exported: tuple[str, ...]  # the toolkit's variables (SM_*), passed to every MPI rank


def run(
    launcher: Launcher,
    cluster: Cluster,
    train: TrainConfig,
    dist: DistConfig,
    framework: dict[str, Any],
    script: Script,
    log: Any,
) -> Result:
    if launcher is Launcher.PARAMETER_SERVER:
        return _run_with_parameter_server(cluster, train, script, log)
    if launcher is Launcher.TORCHRUN:
        command = torchrun.torchrun_command(cluster, script.kind, script.name, script.args, script.env)
        torchrun.require_torchrun(command, script.env.get("PATH"))
        env = dict(script.env, **torchrun.torchrun_environment(cluster))
        log.info("training_started", launcher="torchrun", command=command, cwd=str(script.code_dir))
        return Result(runner.run(command, env, script.code_dir, train.stop_grace_s, log), None)
    job = mpi_job.Job(
        cluster=cluster,
        dist=dist,
        job_name=train.job_name or "",
        work_dir=train.tmp_dir / "smc-mpi",
        environ=script.env,
    )
    log.info(
        "mpi_role",
        role="master" if cluster.is_master else "worker",
        current_host=cluster.current_host,
        master=cluster.master,
        hosts=list(cluster.hosts),
        processes_per_host=cluster.processes_per_host,
    )
    if not cluster.is_master:
        return mpi_job.run_worker(job, log)
    program = mpi_command.program_command(script.kind, script.name, script.args, script.python)
    exported = (*script.exported, *mpi_command.EXTRA_EXPORTS)
    command = mpi_command.mpirun_command(cluster, framework, exported, script.env, program)
    return mpi_job.run_master(job, command, script.code_dir, train.stop_grace_s, log)


def _run_with_parameter_server(cluster: Cluster, train: TrainConfig, script: Script, log: Any) -> Result:
    server = parameter_server.start_server(list(script.python.argv), cluster, script.env, log)
    try:
        path = script.code_dir / script.name
        command = entry_point.build_command(script.kind, path, script.name, script.args, script.python)
        log.info("training_started", launcher="parameter_server", command=command, cwd=str(script.code_dir))
        outcome = runner.run(command, script.env, script.code_dir, train.stop_grace_s, log)
        if outcome.stop_signal is None:
            parameter_server.wait_for_master_to_finish(cluster, log)
        return Result(outcome, None)
    finally:
        background.stop(server)
