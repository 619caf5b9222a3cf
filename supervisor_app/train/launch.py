"""Run the planned script with the launcher the plan chose: one process, a framework module,
torchrun, parameter servers, or an MPI job across hosts. Each way ends in a Result."""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

from supervisor_app.config import Config
from supervisor_app.config.dist import DistConfig, load_dist_config
from supervisor_app.errors import NotExecutableError, UserCodeError
from supervisor_app.train import cluster, runner
from supervisor_app.train.cluster import Cluster
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers import (
    Launcher,
    background,
    mpi_command,
    mpi_job,
    parameter_server,
    torchrun,
)
from supervisor_app.train.launchers.mpi_job import Result
from supervisor_app.train.plan import TrainPlan
from supervisor_app.train.script import Script


def wait_for_hosts(plan: TrainPlan, log: Any) -> None:
    """Other hosts' DNS names may appear after the container starts (SageMaker documents it)."""
    if plan.framework_module:
        return
    if plan.train.studio_local_mode:
        log.info("host_wait_skipped", reason="SM_STUDIO_LOCAL_MODE")
    elif plan.launcher is Launcher.MPI:
        pass  # the MPI launcher waits for each peer's name and SSH port itself, with a line per peer
    elif len(plan.topology.hosts) > 1:
        cluster.wait_for_names(list(plan.topology.hosts), plan.train.host_wait_s, log)


def run(config: Config, plan: TrainPlan, script: Script, log: Any) -> Result:
    code_dir, grace_s = plan.code_dir, plan.train.stop_grace_s
    if plan.framework_module:
        log.info("training_started", framework_module=plan.framework_module, command=script.argv, cwd=str(code_dir))
        return Result(runner.run(script.argv, script.env, code_dir, grace_s, log), None)
    if plan.cluster is None:
        log.info(
            "training_started",
            entry_point=plan.entry_point,
            kind=script.kind.value if script.kind else None,
            command=script.argv,
            cwd=str(code_dir),
            embedded_python=plan.python.embedded if script.kind in (Kind.PROGRAM, Kind.PACKAGE) else None,
        )
        return Result(_start(plan, script, log), None)
    dist = load_dist_config(config)
    if plan.launcher is Launcher.PARAMETER_SERVER:
        return _run_with_parameter_server(plan, plan.cluster, script, log)
    if plan.launcher is Launcher.TORCHRUN:
        return _run_torchrun(plan, plan.cluster, script, log)
    return _run_mpi(plan, plan.cluster, dist, script, log)


def _start(plan: TrainPlan, script: Script, log: Any) -> runner.Outcome:
    name, code_dir, grace_s = plan.entry_point or "", plan.code_dir, plan.train.stop_grace_s
    try:
        return runner.run(script.argv, script.env, code_dir, grace_s, log)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC and script.kind is Kind.COMMAND and _is_text(script.path):
            # As a shell would (and sh -c in sagemaker-training): a text file without #! is a sh script.
            log.info("entry_point_run_with_sh", entry_point=name, reason="no #! line")
            return runner.run(["/bin/sh", f"./{name}", *plan.user_args], script.env, code_dir, grace_s, log)
        # As a shell: 126 when the file is there but cannot be run (permissions, format, a #!
        # interpreter that is missing), else 1.
        error = NotExecutableError if exc.errno in (errno.ENOEXEC, errno.EACCES, errno.ENOENT) else UserCodeError
        raise error(
            f"cannot start entry point {name!r}: {_start_problem(exc, script.argv)}", hint=_start_hint(exc, name)
        ) from None


def _run_torchrun(plan: TrainPlan, cluster: Cluster, script: Script, log: Any) -> Result:
    kind = script.kind or Kind.PROGRAM
    command = torchrun.torchrun_command(cluster, kind, plan.entry_point or "", list(plan.user_args), script.env)
    torchrun.require_torchrun(command, script.env.get("PATH"))
    env = dict(script.env, **torchrun.torchrun_environment(cluster))
    log.info("training_started", launcher="torchrun", command=command, cwd=str(plan.code_dir))
    return Result(runner.run(command, env, plan.code_dir, plan.train.stop_grace_s, log), None)


def _run_mpi(plan: TrainPlan, cluster: Cluster, dist: DistConfig, script: Script, log: Any) -> Result:
    train = plan.train
    job = mpi_job.Job(
        cluster=cluster,
        dist=dist,
        job_name=train.job_name or "",
        work_dir=train.tmp_dir / "smc-mpi",
        environ=dict(script.env),
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
    kind = script.kind or Kind.PROGRAM
    program = mpi_command.program_command(kind, plan.entry_point or "", list(plan.user_args), plan.python)
    exported = (*script.exported, *mpi_command.EXTRA_EXPORTS)
    framework = plan.hyperparameters.framework
    command = mpi_command.mpirun_command(cluster, framework, exported, script.env, program)
    return mpi_job.run_master(job, command, plan.code_dir, train.stop_grace_s, log)


def _run_with_parameter_server(plan: TrainPlan, cluster: Cluster, script: Script, log: Any) -> Result:
    env = dict(script.env)
    server = parameter_server.start_server(list(plan.python.argv), cluster, env, log)
    try:
        log.info("training_started", launcher="parameter_server", command=script.argv, cwd=str(plan.code_dir))
        outcome = runner.run(script.argv, env, plan.code_dir, plan.train.stop_grace_s, log)
        if outcome.stop_signal is None:
            parameter_server.wait_for_master_to_finish(cluster, log)
        return Result(outcome, None)
    finally:
        background.stop(server)


def _start_problem(exc: OSError, command: list[str]) -> str:
    if exc.errno == errno.ENOEXEC:
        return "not an executable program (exec format error: not a script, or built for another CPU)"
    if exc.errno == errno.ENOENT:
        return f"{command[0]} or the interpreter on its #! line does not exist"
    if exc.errno == errno.EACCES:
        return "permission denied: not executable"
    return exc.strerror or str(exc)


def _start_hint(exc: OSError, name: str) -> str:
    if exc.errno == errno.ENOENT:
        return f"check the #! line of {name} and that its interpreter is installed in the image"
    return f"make {name} an executable (chmod +x, with a #! line), or name it .py or .sh"


def _is_text(path: Path | None) -> bool:
    if path is None:
        return False
    with path.open("rb") as f:
        return b"\0" not in f.read(1024)
