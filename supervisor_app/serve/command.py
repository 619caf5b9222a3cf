"""`smc serve`: check what can be checked up front, then supervise gunicorn and nginx.

Under the embedded interpreter the gunicorn master is a fork of this process
(supervision/children.py fork_call) running _master_main: no second start of the onefile binary.
Under the image's Python it is that interpreter running the worker bundle (serve/worker_plan.py).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import MappingProxyType
from typing import Any

from supervisor_app import cpus, exitcodes, interpreter, logs, process, signal_policy
from supervisor_app.config import Config
from supervisor_app.config.metrics import load_metrics_config
from supervisor_app.config.serve import ServeConfig, describe, load_serve_config
from supervisor_app.errors import AppLoadError, BootError, ConfigError, SmcError, UsageError
from supervisor_app.serve import nginx as nginx_conf
from supervisor_app.serve import requirements, worker_launch
from supervisor_app.serve.connections import fit_open_file_limit
from supervisor_app.serve.outputs import now_iso, relay_streams
from supervisor_app.serve.preflight import check_port_free, find_nginx, give_to_nginx_workers, nginx_argv
from supervisor_app.serve.supervision import Supervisor, SupervisorSettings
from supervisor_app.serve.worker_plan import master_plan, worker_settings
from supervisor_app.supervision.children import Child
from supervisor_app.supervision.types import Outputs, Policy
from supervisor_app.worker import gpus
from supervisor_app.worker.boot import MASTER_PROCESS_NAME
from supervisor_app.worker.module_names import did_you_mean
from supervisor_app.worker.settings import WorkerSettings



def run(config: Config, args: list[str]) -> int:
    signal_policy.install_before_loop()
    serve_config = load_serve_config(config)
    if args:
        raise UsageError(f"smc serve takes no arguments, got {' '.join(args)!r}",
                         hint="configure serve with environment variables (see docs/environment.md)")
    from supervisor_app.serve.engine.mode import other_mode  # engine mode, sidecar programs

    mode = other_mode(config)
    if mode is None:
        return serve(config, serve_config)
    if mode.engine:
        from supervisor_app.serve.engine.command import serve_engine

        return serve_engine(config, serve_config, mode.engine_config, mode.program, mode.sidecars)
    return serve(config, serve_config, mode.sidecars)


def serve(config: Config, serve_config: ServeConfig, sidecars: tuple[Any, ...] = ()) -> int:
    log = logs.get_logger("serve")
    _check_model(serve_config)
    nginx_path = find_nginx(serve_config)
    check_port_free(serve_config.port)
    if serve_config.sessions.enabled:
        _start_sessions(serve_config, log)
    detected = gpus.detect(process.foreign_env(config.environ))
    workers = serve_config.workers or len(detected.devices) or cpus.available_cpus()
    log.info("serve_config", **{**describe(serve_config), "workers": workers, "nginx": nginx_path})
    log.info("gpus_detected", count=len(detected.devices), devices=list(detected.devices), source=detected.source,
             workers=workers, workers_from="SAGEMAKER_MODEL_SERVER_WORKERS" if serve_config.workers
             else "gpus" if detected.devices else "cpus")
    if serve_config.program != serve_config.program_requested:
        log.warning(
            "handler_program_fallback",
            requested=serve_config.program_requested,
            code_dir=str(serve_config.code_dir),
            using=serve_config.program,
            why="SAGEMAKER_PROGRAM names a file that is not in the code dir or defines no handler hook "
                "(often the training script)",
        )
    python = choose_python(config, log)
    worker_env, private_site = requirements.install(serve_config, config.environ, log, python)
    try:
        return _serve_with(config, serve_config, worker_env, detected.devices, nginx_path, workers, log, sidecars,
                           python.interpreter)
    finally:
        if private_site is not None:  # a read-only prefix: installed for this run only
            shutil.rmtree(private_site, ignore_errors=True)


def _start_sessions(serve_config: ServeConfig, log: Any) -> None:
    app = serve_config.wsgi_app or serve_config.asgi_app
    if app:  # an app embedding MHCS reads SAGEMAKER_ENABLE_STATEFUL_SESSIONS itself
        log.info("sessions_left_to_app", app=app, why="SMC_WSGI_APP/SMC_ASGI_APP: smc does not read your app's bodies")
        return
    from supervisor_app.serve.sessions import prepare_store

    prepare_store(serve_config.sessions, log, "handler")


def choose_python(config: Config, log: Any) -> requirements.ChosenPython:
    """The Python that runs the workers (interpreter.py's rule), started once to check it can."""
    chosen = interpreter.choose(config.python, config.environ.get("PATH"), config.prefix)
    found = interpreter.probe(chosen, config.environ)
    if not chosen.embedded:
        interpreter.require_worker_version(chosen, found)
    log.info("python_chosen", python=chosen.name, version=found.version_text, executable=found.executable,
             embedded=chosen.embedded, why=chosen.reason)
    return requirements.ChosenPython(chosen, found)


def _serve_with(config: Config, serve_config: ServeConfig, worker_env: dict[str, str], devices: Any,
                nginx_path: str, workers: int, log: Any, sidecars: tuple[Any, ...],
                python: interpreter.Interpreter) -> int:
    if devices:
        worker_env[gpus.ENV] = ",".join(devices)
    if worker_env:  # a private install dir on PYTHONPATH, the GPUs to pin workers to
        config = dataclasses.replace(config, environ=MappingProxyType({**config.environ, **worker_env}))
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="smc-serve-", dir=serve_config.tmp_dir))
    except OSError as exc:
        raise BootError(f"cannot create smc's run directory in {serve_config.tmp_dir}: {exc.strerror}",
                        hint="set TMPDIR to a writable directory (nginx.conf and the gunicorn socket go there)") from None
    try:
        return _supervise(config, serve_config, run_dir, nginx_path, workers, log, sidecars, python)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _supervise(config: Config, serve_config: ServeConfig, run_dir: Path, nginx_path: str, workers: int,
               log: object, sidecars: tuple[Any, ...], python: interpreter.Interpreter) -> int:
    # 0711: nginx workers (another user when started as root) may reach the socket and the ready
    # file by name, but not list or write the directory.
    run_dir.chmod(0o711)
    metrics_config = load_metrics_config(serve_config)
    temp_dir = run_dir / "nginx"
    temp_dir.mkdir(mode=0o700)
    if os.geteuid() == 0:
        give_to_nginx_workers(temp_dir)
    socket_path = run_dir / nginx_conf.SOCKET_NAME
    conf_path = run_dir / nginx_conf.CONF_FILE
    nofile = fit_open_file_limit(nginx_conf.worker_rlimit_nofile(serve_config.worker_connections),
                                 serve_config.worker_connections, log)
    conf_path.write_text(nginx_conf.render_nginx_conf(nginx_conf.NginxSettings(
        run_dir=run_dir, socket_path=socket_path, port=serve_config.port,
        max_body_bytes=serve_config.max_payload_bytes, timeout_s=serve_config.timeout_s,
        nginx_timeout_s=serve_config.nginx_timeout_s, worker_connections=serve_config.worker_connections,
        keepalive_s=serve_config.keepalive_s, log_ping=serve_config.log_ping, rlimit_nofile=nofile,
        asgi=bool(serve_config.asgi_app),
    )))
    notify_read, notify_write = os.pipe()
    settings = worker_settings(serve_config, run_dir, workers, config.log_level, python)
    plan = master_plan(settings, python, dict(config.environ) if python.embedded else process.foreign_env(config.environ),
                       notify_write, None if python.embedded else worker_launch.bundle_path())
    worker_launch.prepare(plan)
    if plan.argv is None:  # the embedded interpreter: a fork of smc, no second start of the binary
        gunicorn = Child("gunicorn", ["smc", "serve", "(gunicorn master)"], dict(plan.env), stop_signal=signal.SIGTERM,
                         pass_fds=(notify_write,), target=functools.partial(_master_main, config, settings, notify_write))
    else:
        gunicorn = Child("gunicorn", list(plan.argv), dict(plan.env), stop_signal=signal.SIGTERM, pass_fds=(notify_write,))
    nginx_env = process.foreign_env(config.environ)
    nginx = Child("nginx", nginx_argv(nginx_path, run_dir, conf_path, nginx_env),
                  nginx_env, stop_signal=signal.SIGQUIT)  # QUIT: nginx's graceful stop
    process.become_subreaper()
    policy = Policy(grace_s=serve_config.stop_grace_s, health_interval_s=serve_config.health_interval_s,
                    health_timeout_s=serve_config.health_timeout_s, restart_limit=serve_config.restart_limit,
                    restart_window_s=serve_config.restart_window_s, startup_timeout_s=serve_config.startup_timeout_s,
                    drain_s=serve_config.drain_s, worker_crash_limit=serve_config.worker_crash_limit,
                    worker_crash_window_s=serve_config.worker_crash_window_s)
    settings = SupervisorSettings(run_dir=run_dir, socket_path=socket_path,
                                  ready_file=run_dir / nginx_conf.READY_FILE, port=serve_config.port,
                                  notify_fd=notify_read, policy=policy)
    supervisor_class: Any = Supervisor
    if sidecars:  # SMC_PROGRAMS: supervisord-style programs beside nginx and gunicorn
        from supervisor_app.supervision.sidecars import with_sidecars

        supervisor_class = with_sidecars(Supervisor)
    supervisor = supervisor_class(gunicorn, nginx, settings, Outputs(log, now_iso, *relay_streams(config)))
    if sidecars:
        supervisor.add_sidecars(sidecars)
    exporter = None
    if metrics_config.enabled:  # else http.server is never imported: smc serve starts as fast as before
        from supervisor_app.metrics.exporter import start as start_exporter

        exporter = start_exporter(metrics_config, run_dir, workers, sys.stdout.buffer)
    try:
        outcome = supervisor.run()
    finally:
        if exporter is not None:
            exporter.close()
    process.stop_descendants(serve_config.stop_grace_s, log)  # orphans of handlers (setsid, double fork)
    if outcome.load_error:
        error_class = BootError if outcome.exit_code == exitcodes.BOOT else AppLoadError
        raise error_class(outcome.load_error["message"], hint=outcome.load_error["hint"])
    if outcome.exit_code:
        log.error("serve_failed", reason=outcome.reason, exit_code=outcome.exit_code,  # type: ignore[attr-defined]
                  cause=outcome.cause or process.describe_exit(outcome.exit_code))
    else:
        log.info("serve_stopped", reason=outcome.reason)  # type: ignore[attr-defined]
    return outcome.exit_code


def _master_main(config: Config, settings: WorkerSettings, notify_fd: int) -> int:
    """The gunicorn master, in a fork of the supervisor. Its environment is what workers and user
    code see: config.environ, with the private install dir and GPU pinning added above."""
    os.environ.clear()
    os.environ.update(config.environ)
    process.set_process_name(MASTER_PROCESS_NAME)  # /proc/PID/comm, as worker/boot.py names it
    logs.configure(config.log_level, "json")  # the supervisor relays JSON lines as they are
    log = logs.get_logger("gunicorn")
    try:
        from supervisor_app.worker.gunicorn_app import run_master  # gunicorn only in this process

        return run_master(settings, config.environ, notify_fd)
    except SmcError as exc:
        log.error("command_failed", error=exc.message, hint=exc.hint or None, exit_code=exc.exit_code)
        return exc.exit_code
    except Exception:  # a bug in smc: say so with the traceback, never a bare crash
        log.exception("internal_error", hint="this is a bug in smc; please report it with this traceback")
        return exitcodes.FAILURE


def _check_model(config: ServeConfig) -> None:
    if config.multi_model:
        return  # no model at start: POST /models brings them (worker/mme)
    if config.code_dir_requested and config.code_dir_requested.startswith("s3://"):
        logs.get_logger("serve").warning(
            "submit_directory_ignored", submit_dir=config.code_dir_requested, code_dir=str(config.code_dir),
            why="serve does not download code; package it in model.tar.gz under code/",
        )
    if config.wsgi_app or config.asgi_app:
        # An app may need no model (it loads its own, or none): /opt/ml/model is not required. The
        # worker imports the app and reports what is wrong with it.
        return
    if not config.model_dir.is_dir():
        raise ConfigError(
            f"model directory {config.model_dir} does not exist",
            hint="SageMaker unpacks model.tar.gz there; locally mount it: docker run -v $PWD/model:/opt/ml/model "
            "IMAGE serve (or set SAGEMAKER_BASE_DIR)",
        )
    path = config.code_dir / f"{config.module_name}.py"
    if not path.is_file() and not (config.code_dir / config.module_name / "__init__.py").is_file():
        raise AppLoadError(
            f"handler module {config.module_name}.py not found in {' or '.join(map(str, config.code_dirs_searched))}"
            + did_you_mean(config.module_name, config.code_dirs_searched),
            hint=f"put your handler in one of them ({config.code_dir_rule}), or set SAGEMAKER_PROGRAM to its file name",
        )


__all__ = ["run"]
