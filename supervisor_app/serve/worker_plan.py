"""What the worker side is told (WorkerSettings, built from ServeConfig) and how its gunicorn
master is started: a fork of smc under the embedded interpreter, or the image's Python running
the worker bundle (serve/worker_launch.py does it). Pure: no processes, no files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.config.serve import ServeConfig
from supervisor_app.interpreter import Interpreter
from supervisor_app.worker.boot import SCRIPT_NAME
from supervisor_app.worker.run_dir import WORKER_SETTINGS_FILE
from supervisor_app.worker.settings import WorkerSettings



@dataclass(frozen=True)
class MasterPlan:
    """None of argv: fork smc itself (embedded). Else exec argv with env."""

    argv: tuple[str, ...] | None
    env: Mapping[str, str]
    settings: WorkerSettings
    settings_file: Path
    boot_script: Path | None = None  # worker/boot.py, copied out of the bundle (the image's Python only)


def worker_settings(config: ServeConfig, run_dir: Path, workers: int, log_level: int,
                    interpreter: Interpreter) -> WorkerSettings:
    return WorkerSettings(
        run_dir=run_dir, model_dir=config.model_dir, code_dir=config.code_dir,
        code_dir_requested=config.code_dir_requested, code_dirs_searched=config.code_dirs_searched,
        code_dir_rule=config.code_dir_rule, module_name=config.module_name, wsgi_app=config.wsgi_app,
        asgi_app=config.asgi_app, default_accept=config.default_accept, timeout_s=config.timeout_s,
        gunicorn_timeout_s=config.gunicorn_timeout_s, stop_grace_s=config.stop_grace_s,
        max_payload_mb=config.max_payload_mb, batch_strategy=config.batch_strategy,
        max_concurrent_transforms=config.max_concurrent_transforms, preload_model=config.preload_model,
        workers=workers, log_level=log_level, embedded=interpreter.embedded, prefix=config.prefix,
        multi_model=config.multi_model, batch_size=config.batch_size, batch_delay_ms=config.batch_delay_ms,
        sessions_path=str(config.sessions.path) if config.sessions.enabled and not (config.wsgi_app or config.asgi_app)
        else None,
        sessions_expiration_s=float(config.sessions.expiration_s),
    )


def master_plan(settings: WorkerSettings, interpreter: Interpreter, env: Mapping[str, str],
                notify_fd: int, bundle_zip: Path | None) -> MasterPlan:
    """env: what user code sees (the image's environment for the image's Python, without the
    bundle's library path)."""
    settings_file = settings.run_dir / WORKER_SETTINGS_FILE
    if interpreter.embedded or bundle_zip is None:
        return MasterPlan(None, env, settings, settings_file)
    script = settings.run_dir / SCRIPT_NAME
    argv = (*interpreter.argv, str(script), str(bundle_zip), str(settings_file), str(notify_fd))
    return MasterPlan(argv, env, settings, settings_file, script)


__all__ = ["MasterPlan", "master_plan", "worker_settings"]
