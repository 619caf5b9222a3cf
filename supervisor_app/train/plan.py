"""The job's plan: what `smc train` decides before it does anything, decided once.

plan_job reads the frozen TrainConfig and what the host brings (Resources) and decides the entry
point (SAGEMAKER_PROGRAM beats the sagemaker_program hyperparameter), where the code comes from,
the interpreter, the topology, the launcher and, for a distributed launcher, the cluster. It
starts nothing and writes nothing; `smc doctor` plans with it too, so the two cannot disagree.
A missing or unsafe entry point name does not stop the plan (doctor still checks the launcher);
install.py refuses it before it fetches any code.

What depends on the files of the code dir (the entry point's kind, its command, its environment)
is planned by script.py once the code dir is filled: the code may still have to come from S3.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from supervisor_app import interpreter
from supervisor_app.config.train import TrainConfig
from supervisor_app.errors import ConfigError
from supervisor_app.train import entry_point, hyperparams
from supervisor_app.train.cluster import Cluster, Topology, discover, topology_of
from supervisor_app.train.hyperparams import SplitHyperparameters
from supervisor_app.train.launchers import Launcher, choose
from supervisor_app.train.resources import Resources


@dataclass(frozen=True)
class TrainPlan:
    train: TrainConfig
    hyperparameters: SplitHyperparameters
    framework_module: str | None  # SAGEMAKER_TRAINING_MODULE pkg.mod:fn: a framework image's launcher
    entry_point: str | None  # as configured; checked by entry_point.validate_name before any use
    source: str  # where the code dir's files come from (a directory, a tar.gz, s3://...)
    python: interpreter.Interpreter
    python_path: tuple[str, ...]  # the code dir first, then the container's PYTHONPATH
    user_args: tuple[str, ...]  # the user's hyperparameters as argv
    resources: Resources
    topology: Topology
    launcher: Launcher
    cluster: Cluster | None  # the launch view of the topology, for launchers other than PROCESS

    @property
    def code_dir(self) -> Path:
        return self.train.layout.code_dir

    @property
    def name(self) -> str:
        """What runs, for logs and the failure file."""
        return self.framework_module or self.entry_point or ""

    @property
    def module_name(self) -> str:
        # The toolkit's expression, "None" included when no entry point is set.
        return str(self.entry_point).removesuffix(".py")


def plan_job(train: TrainConfig, resources: Resources) -> TrainPlan:
    split = hyperparams.split(train.hyperparameters)
    if train.framework_module:
        _check_framework_module(train.framework_module)
    python = interpreter.choose(train.python, train.environ.get("PATH"), train.prefix)
    topology = topology_of(train.resource_config, split.framework)
    # A framework module launches the job itself, as the toolkit's framework containers do.
    launcher = Launcher.PROCESS if train.framework_module else choose(split.framework, topology)
    cluster = None if launcher is Launcher.PROCESS else discover(topology, resources, split.framework)
    return TrainPlan(
        train=train,
        hyperparameters=split,
        framework_module=train.framework_module,
        entry_point=entry_point_of(train, split),
        source=source_of(train, split),
        python=python,
        python_path=_python_path(train.layout.code_dir, train.environ.get("PYTHONPATH", "")),
        user_args=tuple(hyperparams.to_argv(split.user)),
        resources=resources,
        topology=topology,
        launcher=launcher,
        cluster=cluster,
    )


def entry_point_of(train: TrainConfig, split: SplitHyperparameters) -> str | None:
    """SAGEMAKER_PROGRAM beats the sagemaker_program hyperparameter, as in sagemaker-training."""
    if train.program:
        return train.program
    value = split.launcher.get(hyperparams.PROGRAM)
    return None if value is None else str(value)


def source_of(train: TrainConfig, split: SplitHyperparameters) -> str:
    """The sagemaker_submit_directory hyperparameter, else SAGEMAKER_SUBMIT_DIRECTORY, else the code dir."""
    value = split.launcher.get(hyperparams.SUBMIT_DIRECTORY)
    if value is not None:
        return str(value)
    return train.submit_directory or str(train.layout.code_dir)


def _check_framework_module(spec: str) -> None:
    module, _, function = spec.partition(":")
    if not module or not function:
        raise ConfigError(
            f"SAGEMAKER_TRAINING_MODULE={spec!r} is not of the form package.module:function",
            hint="e.g. SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main",
        )


def _python_path(code_dir: Path, existing: str) -> tuple[str, ...]:
    entries = [str(code_dir)]
    entries += [p for p in existing.split(os.pathsep) if p and p not in entries]
    return tuple(entries)
