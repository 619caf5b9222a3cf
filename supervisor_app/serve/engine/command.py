"""`smc serve` in engine mode: plan, render nginx.conf, start nginx and the engine under the
EngineSupervisor, and turn its outcome into smc's exit code and final log line."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor_app import logs, process
from supervisor_app.config import Config
from supervisor_app.config.engine import AUTO_ROUTE, EngineConfig
from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import BootError
from supervisor_app.serve import nginx as nginx_conf
from supervisor_app.serve.connections import fit_open_file_limit
from supervisor_app.serve.engine.health import HealthPoller
from supervisor_app.serve.engine.nginx_conf import EngineNginxSettings, render_engine_nginx_conf
from supervisor_app.serve.engine.plan import EnginePlan, plan_engine
from supervisor_app.serve.engine.supervisor import EngineSupervisor, GroupChild
from supervisor_app.serve.outputs import now_iso, relay_streams
from supervisor_app.serve.preflight import check_port_free, find_nginx, give_to_nginx_workers, nginx_argv
from supervisor_app.serve.supervision import SupervisorSettings
from supervisor_app.supervision.children import Child
from supervisor_app.supervision.types import Outputs, Policy


def engine_env(config: Config, plan: EnginePlan) -> dict[str, str]:
    env = process.foreign_env(config.environ)
    env.update(plan.environment)
    return env


def serve_engine(config: Config, serve_config: ServeConfig, engine_config: EngineConfig,
                 program: Any = None, sidecars: tuple[Any, ...] = ()) -> int:
    """Engine mode; `program` is the engine's ProgramSpec when a programs file names one."""
    log = logs.get_logger("serve")
    if program is None:
        plan = plan_engine(serve_config, engine_config, engine_config.command or "", serve_config.path_env)
        popen_kwargs: dict[str, Any] = {}
    else:
        from supervisor_app.programs.parse import user_popen_kwargs

        plan = plan_engine(serve_config, replace(engine_config, max_restarts=program.startretries,
                                                 stop_signal=program.stopsignal),
                           program.command, serve_config.path_env, name=program.name,
                           directory=program.directory, environment=program.environment)
        popen_kwargs = user_popen_kwargs(program)
    nginx_path = find_nginx(serve_config)
    check_port_free(serve_config.port)
    _check_engine_port_idle(plan)
    if engine_config.args_from is not None:
        # The effective argv, element by element: what a value with spaces became is visible here.
        log.info("engine_args_from_env", prefix=engine_config.args_from, flags=list(engine_config.args),
                 argv=list(plan.argv))
    log.info("serve_config", mode="engine", engine_command=plan.command, engine_url=engine_config.url,
             health_path=plan.health_path, invocations_path=plan.invocations_path,
             max_restarts=plan.max_restarts, port=serve_config.port, timeout_s=serve_config.timeout_s,
             startup_timeout_s=serve_config.startup_timeout_s, grace_s=serve_config.stop_grace_s,
             max_payload_mb=serve_config.max_payload_mb, nginx=nginx_path)
    try:
        run_dir = Path(tempfile.mkdtemp(prefix="smc-serve-", dir=serve_config.tmp_dir))
    except OSError as exc:
        raise BootError(f"cannot create smc's run directory in {serve_config.tmp_dir}: {exc.strerror}",
                        hint="set TMPDIR to a writable directory (nginx.conf and the ready file go there)") from None
    try:
        return _supervise(config, serve_config, plan, run_dir, nginx_path, log, popen_kwargs, sidecars)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _check_engine_port_idle(plan: EnginePlan) -> None:
    """Something already answering at the engine's address would pass its health checks."""
    try:
        with socket.create_connection((plan.host, plan.port), timeout=0.5):
            pass
    except OSError:
        return
    raise BootError(f"{plan.host}:{plan.port} (SMC_ENGINE_URL) already accepts connections before the engine started",
                    hint="another process holds the engine's port (an engine left from an earlier run?); stop it, "
                         "or start the engine on another port and set SMC_ENGINE_URL to match")


def _start_adapters(config: Config, serve_config: ServeConfig, plan: EnginePlan, run_dir: Path,
                    log: Any) -> Any:
    """SMC_ENGINE_ADAPTERS=vllm|sglang: smc's adapter hop (adapter_proxy.py); None for passthrough."""
    if plan.adapters == "passthrough":
        return None
    from supervisor_app.config.archive import ArchiveLimits
    from supervisor_app.config.settings import read_settings
    from supervisor_app.config.train import TRAIN_SETTINGS
    from supervisor_app.serve.engine.adapter_proxy import SOCKET_NAME as ADAPTER_SOCKET
    from supervisor_app.serve.engine.adapter_proxy import AdapterProxy
    from supervisor_app.serve.engine.adapters import Adapters, engine_call

    limit_settings = tuple(s for s in TRAIN_SETTINGS if s.field in ("max_archive_bytes", "max_archive_files"))
    limits = read_settings(limit_settings, config.environ)
    adapters = Adapters(plan.adapters, engine_call(plan.host, plan.port), model_dir=serve_config.model_dir,
                        unpack_root=run_dir / "adapters",
                        limits=ArchiveLimits(limits["max_archive_bytes"], limits["max_archive_files"]),
                        environ=dict(config.environ), timeout_s=serve_config.timeout_s,
                        log=logs.get_logger("adapters"))
    proxy = AdapterProxy(str(run_dir / ADAPTER_SOCKET), adapters, plan.host, plan.port, plan.invocations_path,
                         serve_config.timeout_s, log)
    proxy.start()
    log.info("engine_adapters", mode=plan.adapters, load_path=adapters.dialect.load_path,
             unload_path=adapters.dialect.unload_path)
    return proxy


def _supervise(config: Config, serve_config: ServeConfig, plan: EnginePlan, run_dir: Path, nginx_path: str,
               log: object, popen_kwargs: dict[str, Any], sidecars: tuple[Any, ...]) -> int:
    run_dir.chmod(0o711)
    temp_dir = run_dir / "nginx"
    temp_dir.mkdir(mode=0o700)
    if os.geteuid() == 0:
        give_to_nginx_workers(temp_dir)
    conf_path = run_dir / nginx_conf.CONF_FILE
    # As in handler mode: the limit raised as far as the hard limit allows, said when it falls short.
    nofile = fit_open_file_limit(nginx_conf.worker_rlimit_nofile(serve_config.worker_connections),
                                 serve_config.worker_connections, log)
    router = None
    sessions = serve_config.sessions.smc_owns_engine_protocol
    if plan.invocations_path == AUTO_ROUTE or sessions:
        from supervisor_app.serve.engine.router import SOCKET_NAME, Router

        router = Router(str(run_dir / SOCKET_NAME))
        if sessions:  # every /invocations through the hop: smc answers the session protocol (sessions.py)
            from supervisor_app.serve.engine.sessions import start as start_sessions

            router.answer = start_sessions(serve_config.sessions, plan.invocations_path, serve_config.timeout_s,
                                           log).answer
        router.start()
    adapters = _start_adapters(config, serve_config, plan, run_dir, log)
    conf_path.write_text(render_engine_nginx_conf(EngineNginxSettings(
        run_dir=run_dir, port=serve_config.port, engine_host=plan.host, engine_port=plan.port,
        invocations_path=plan.invocations_path, max_body_bytes=serve_config.max_payload_bytes,
        timeout_s=serve_config.timeout_s, worker_connections=serve_config.worker_connections,
        keepalive_s=serve_config.keepalive_s, log_ping=serve_config.log_ping, rlimit_nofile=nofile,
        router_socket=Path(router.path) if router else None, sessions=sessions,
        adapter_socket=Path(adapters.path) if adapters else None,
    )))
    notify_read, notify_write = os.pipe2(os.O_CLOEXEC)
    engine = GroupChild(plan.name, list(plan.argv), engine_env(config, plan), stop_signal=plan.stop_signal)
    engine.popen_kwargs = popen_kwargs
    nginx_env = process.foreign_env(config.environ)
    nginx = Child("nginx", nginx_argv(nginx_path, run_dir, conf_path, nginx_env),
                  nginx_env, stop_signal=signal.SIGQUIT)  # QUIT: nginx's graceful stop
    process.become_subreaper()
    policy = Policy(serve_config.stop_grace_s, serve_config.health_interval_s, serve_config.health_timeout_s,
                    serve_config.restart_limit, serve_config.restart_window_s, serve_config.startup_timeout_s)
    poller = HealthPoller(plan.host, plan.port, plan.health_path, plan.health_interval_s,
                          serve_config.health_timeout_s, notify_write)
    out, err = relay_streams(config)
    supervisor_class: Any = EngineSupervisor
    if sidecars:
        from supervisor_app.supervision.sidecars import with_sidecars

        supervisor_class = with_sidecars(EngineSupervisor)
    settings = SupervisorSettings(run_dir=run_dir, socket_path=run_dir / "engine.unused",
                                  ready_file=run_dir / nginx_conf.READY_FILE, port=serve_config.port,
                                  notify_fd=notify_read, policy=policy)
    supervisor = supervisor_class(engine, nginx, settings, Outputs(log, now_iso, out, err),
                                  plan=plan, poller=poller)
    if sidecars:
        supervisor.add_sidecars(sidecars)
    if adapters is not None:
        supervisor.adapters = adapters.adapters
    poller.start()
    try:
        outcome = supervisor.run()
    finally:
        poller.stop()
        if router is not None:
            router.stop()
        if adapters is not None:
            adapters.stop()
    process.stop_descendants(serve_config.stop_grace_s, log)  # orphans of the engine (setsid, double fork)
    if outcome.exit_code:
        log.error("serve_failed", reason=outcome.reason, exit_code=outcome.exit_code,  # type: ignore[attr-defined]
                  cause=outcome.cause or process.describe_exit(outcome.exit_code))
    else:
        log.info("serve_stopped", reason=outcome.reason)  # type: ignore[attr-defined]
    return outcome.exit_code


__all__ = ["serve_engine"]
