"""The script's part of the plan, planned once the code dir is filled: the entry point's file and
kind, its command, its whole environment, and the pip install that comes before it.

It reads the code dir (the kind depends on its files) and writes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor_app import process
from supervisor_app.train import entry_point, environment, requirements
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers import Launcher, tf_config_env
from supervisor_app.train.plan import TrainPlan

# How the toolkit's framework containers start SAGEMAKER_TRAINING_MODULE=pkg.mod:fn, in-process.
FRAMEWORK_CALL = (
    "import importlib, sys; module, _, fn = sys.argv[1].partition(':'); "
    "getattr(importlib.import_module(module), fn)()"
)


@dataclass(frozen=True)
class Script:
    kind: Kind | None  # None: a framework module runs the job
    path: Path | None  # the entry point's file in the code dir
    argv: list[str]  # the command of a job that runs as one process
    env: Mapping[str, str]  # built on the container's environment (not the bundle's), SM_* and all
    pip_argv: list[str] | None  # None: nothing to install
    pip_env: Mapping[str, str]

    @property
    def exported(self) -> tuple[str, ...]:
        """The toolkit's variables, which every MPI rank gets."""
        return tuple(name for name in self.env if name.startswith("SM_"))


def plan_script(plan: TrainPlan) -> Script:
    python = plan.python
    if plan.framework_module:
        base = process.self_env(plan.train.environ) if python.embedded else process.foreign_env(plan.train.environ)
        argv = [*python.argv, "-c", FRAMEWORK_CALL, plan.framework_module]
        return Script(None, None, argv, environment.script_environment(plan, base), None, {})
    name = entry_point.validate_name(plan.entry_point)
    path = entry_point.entry_path(plan.code_dir, name)
    kind = entry_point.kind_of(plan.code_dir, name)
    # smc's own interpreter needs the bundle's libraries; anything else gets the container's.
    own = python.embedded and kind in (Kind.PROGRAM, Kind.PACKAGE) and plan.launcher is Launcher.PROCESS
    base = process.self_env(plan.train.environ) if own else process.foreign_env(plan.train.environ)
    env = environment.script_environment(plan, base)
    env.update(tf_config_env(plan.hyperparameters.framework, plan.topology))
    return Script(
        kind=kind,
        path=path,
        argv=entry_point.build_command(kind, path, name, list(plan.user_args), python),
        env=env,
        pip_argv=requirements.pip_command(kind, plan.code_dir, python, plan.train.prefix),
        pip_env=dict(base, PYTHONPATH=os.pathsep.join(plan.python_path), PYTHONUNBUFFERED="1"),
    )
