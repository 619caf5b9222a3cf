"""What `smc train` puts in place before the script runs: the code dir's files (from the submit
directory, S3 included), the entry point's execute bits, and the pip install of its requirements."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor_app.config.train import TrainConfig
from supervisor_app.train import entry_point, requirements
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.plan import TrainPlan
from supervisor_app.train.script import Script


def fill_code_dir(plan: TrainPlan, log: Any) -> None:
    code_dir = plan.code_dir
    if plan.framework_module:
        code_dir.mkdir(parents=True, exist_ok=True)  # the framework's cwd; it fetches its own code
        return
    entry_point.validate_name(plan.entry_point)  # before any code is fetched
    train = plan.train
    action = entry_point.prepare_code_dir(
        plan.source, code_dir, train.tmp_dir, lambda url, dest: _s3_download(train, url, dest),
        train.archive_limits,
    )
    log.info("code_dir_ready", code_dir=str(code_dir), source=plan.source, action=action)


def prepare_script(plan: TrainPlan, script: Script, log: Any) -> None:
    """The entry point's execute bits (as the toolkit chmods it), then its requirements."""
    if script.path is not None and script.kind in (Kind.SHELL, Kind.COMMAND):
        entry_point.make_executable(script.path)
    if script.pip_argv is not None:
        requirements.install(script.pip_argv, script.pip_env, plan.code_dir, plan.train.stop_grace_s, log)


def _s3_download(train: TrainConfig, url: str, dest: Path) -> None:
    from supervisor_app.train import s3  # only s3:// submit dirs pay for urllib/ssl

    s3.download(url, dest, train.s3, train.max_archive_bytes)
