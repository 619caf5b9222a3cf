"""The gunicorn master, run in a fork of the `smc serve` supervisor (serve/command.py).

Sync workers (worker/sync_worker.py: a lean request path for nginx) on a unix socket in smc's private run dir. Each worker imports the handler and runs
model_fn once at start (or the master does it once before forking, SMC_PRELOAD_MODEL=true), then
tells the supervisor through the notify pipe; the supervisor owns readiness (see supervision.py).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter
from gunicorn.errors import AppImportError, HaltServer
from gunicorn.glogging import Logger as GunicornLogger

from supervisor_app import exitcodes, logs, usersite
from supervisor_app.errors import AppLoadError
from supervisor_app.metrics import layout as metrics_layout
from supervisor_app.metrics import recorder as metrics
from supervisor_app.worker import early_signals, gpus
from supervisor_app.worker import handler_context
from supervisor_app.worker import handlers as handler_module
from supervisor_app.worker.run_dir import SOCKET_NAME
from supervisor_app.worker.user_app import load_user_app
from supervisor_app.worker.worker_exits import reap_workers
from supervisor_app.worker.settings import WorkerSettings
from supervisor_app.worker.wsgi import App
from supervisor_app.supervision.causes import OomCounter


def notify(fd: int, event: str, **fields: Any) -> None:
    """One JSON line to the supervisor; below PIPE_BUF, so lines from several workers never mix."""
    line = json.dumps({"event": event, "pid": os.getpid(), **fields})[:3000] + "\n"
    try:
        os.write(fd, line.encode())
    except OSError:
        pass  # the supervisor is gone; gunicorn will notice its own fate


# gunicorn's own sentences, keyed by their format string, as snake_case facts with fields; any
# other line keeps event "gunicorn". The formatted sentence stays in `message` for people.
_GUNICORN_EVENTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "Starting gunicorn %s": ("gunicorn_starting", ("version",)),
    "Listening at: %s (%s)": ("gunicorn_listening", ("address", "master_pid")),
    "Using worker: %s": ("gunicorn_worker_class", ("worker_class",)),
    "Booting worker with pid: %s": ("worker_booting", ("worker_pid",)),
    "Worker exiting (pid: %s)": ("worker_exiting", ("worker_pid",)),
    "Worker (pid:%s) exited with code %s.": ("worker_exited", ("worker_pid", "exit_code")),
    "Worker (pid:%s) was sent %s!": ("worker_signalled", ("worker_pid", "signal")),
    "Worker (pid:%s) was sent %s! Perhaps out of memory?": ("worker_killed", ("worker_pid", "signal")),
    "WORKER TIMEOUT (pid:%s)": ("worker_timeout", ("worker_pid",)),
    "Autorestarting worker after current request.": ("worker_max_requests", ()),
    "Handling signal: %s": ("signal_received", ("signal",)),
    "Shutting down: %s": ("gunicorn_stopping", ("name",)),
}


class JsonLogger(GunicornLogger):
    """gunicorn's error and access logs as smc JSON lines."""

    def setup(self, cfg: Any) -> None:
        self.log = logs.get_logger("gunicorn")
        self.loglevel = logging.INFO

    def _emit(self, method: str, msg: Any, args: tuple[Any, ...], exc_info: Any = None) -> None:
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = f"{msg} {args}"
        event, names = _GUNICORN_EVENTS.get(str(msg), ("gunicorn", ()))
        fields = dict(zip(names, args)) if len(names) == len(args) else {}
        getattr(self.log, method)(event, message=text, exc_info=exc_info, **fields)

    def critical(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("critical", msg, args, kwargs.get("exc_info"))

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, args, kwargs.get("exc_info"))

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("warning", msg, args, kwargs.get("exc_info"))

    def info(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("info", msg, args, kwargs.get("exc_info"))

    def log_event(self, level: str, event: str, **fields: Any) -> None:
        """An smc event with fields (not one of gunicorn's sentences)."""
        getattr(self.log, level)(event, **fields)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("debug", msg, args, kwargs.get("exc_info"))

    def exception(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._emit("error", msg, args, True)

    def log(self, lvl: int, msg: Any, *args: Any, **kwargs: Any) -> None:
        name = logging.getLevelName(lvl).lower() if isinstance(lvl, int) else str(lvl).lower()
        self._emit(name if name in ("debug", "info", "warning", "error", "critical") else "info", msg, args)

    def access(self, resp: Any, req: Any, environ: Any, request_time: Any) -> None:
        pass  # nginx writes the access log (with the inference id); a second one would double the lines

    def reopen_files(self) -> None:
        pass

    def close_on_exec(self) -> None:
        pass


_SNAKE_CASE = re.compile(r"[a-z][a-z0-9_]{0,63}")


class _ToStructlog(logging.Handler):
    """The user's `logging` calls (and those of the libraries in the worker: uvicorn, the app's
    framework) as JSON lines that carry the request's inference id. A message that is a snake_case
    fact is the event, as smc's own; any other sentence ("Exception in ASGI application") goes into
    `message` of the event `log`, so every event stays a snake_case name."""

    def __init__(self) -> None:
        super().__init__()
        self.log = logs.get_logger("user")

    def emit(self, record: logging.LogRecord) -> None:
        method = record.levelname.lower()
        if method not in ("debug", "info", "warning", "error", "critical"):
            method = "info"
        text = record.getMessage()
        if _SNAKE_CASE.fullmatch(text):
            getattr(self.log, method)(text, logger=record.name, exc_info=record.exc_info or None)
        else:
            getattr(self.log, method)("log", message=text.strip(), logger=record.name, exc_info=record.exc_info or None)


def route_user_logging(level: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_ToStructlog()]
    root.setLevel(level)


def execution_parameters(config: WorkerSettings, workers: int) -> dict[str, Any]:
    return {
        "MaxConcurrentTransforms": config.max_concurrent_transforms or workers,
        "BatchStrategy": config.batch_strategy,
        "MaxPayloadInMB": config.max_payload_mb,
    }


class HeartbeatArbiter(Arbiter):
    """gunicorn's arbiter plus a heartbeat on the notify pipe from its main loop (about once a
    second), so the supervisor can tell a hung master from a busy one: a unix socket keeps
    accepting connections into its backlog even when nobody is serving them."""

    notify_fd = -1
    last_beat = 0.0
    halting = False
    oom: OomCounter | None = None

    def halt(self, reason: Any = None, exit_status: int = 0) -> None:
        self.halting = True
        super().halt(reason, exit_status)

    def reap_workers(self) -> None:
        # When every worker fails to load at once, gunicorn's halt() reaps the second one and
        # raises HaltServer again from inside halt(), ending the master with exit code 1
        # instead of 4. Once halting, the first reason stands.
        try:
            reap_workers(self, self.oom or OomCounter(), self.timeout, lambda event, **fields: notify(self.notify_fd, event, **fields))
        except HaltServer:
            if not self.halting:
                raise

    def murder_workers(self) -> None:
        super().murder_workers()
        now = time.monotonic()
        if now - self.last_beat >= 1.0:
            self.last_beat = now
            notify(self.notify_fd, "heartbeat")


class ModelServer(BaseApplication):
    batcher: Any = None  # worker/batching.Batcher with SMC_BATCH_SIZE > 1; the worker watches it

    def __init__(self, config: WorkerSettings, notify_fd: int) -> None:
        self.config = config
        self.run_dir = config.run_dir
        self.notify_fd = notify_fd
        self.workers = config.workers
        self.log = logs.get_logger("gunicorn")
        super().__init__()

    def load_config(self) -> None:
        notify_fd = self.notify_fd
        settings = {
            "bind": [f"unix:{self.run_dir / SOCKET_NAME}"],
            "workers": self.workers,
            "worker_class": self._worker_class(),
            "timeout": math.ceil(self.config.gunicorn_timeout_s),
            "graceful_timeout": math.ceil(self.config.stop_grace_s),
            "preload_app": self.config.preload_model,
            "logger_class": JsonLogger,
            "control_socket_disable": True,
            "accesslog": None,
            "worker_tmp_dir": str(self.run_dir),
            "proc_name": "smc-serve",
            "when_ready": lambda arbiter: notify(notify_fd, "listening"),
            "post_worker_init": lambda worker: _worker_ready(worker, notify_fd),
            "post_fork": self._post_fork,
        }
        settings.update(self._gpu_hooks())
        for key, value in settings.items():
            self.cfg.set(key, value)

    def _post_fork(self, arbiter: Any, worker: Any) -> None:
        """In each new worker, before it loads the model."""
        early_signals.remember_master_queue(arbiter, worker)
        metrics.worker_started()
        gpu = getattr(worker, "smc_gpu", None)
        if gpu is not None:
            gpus.pin_this_worker(gpu)
            handler_context.set_worker_gpu(0)  # the one visible device
            self.log.info("worker_gpu_assigned", worker_pid=os.getpid(), gpu=gpu, cuda_visible_devices=gpu, gpu_id=0)

    def _gpu_hooks(self) -> dict[str, Any]:
        """With GPUs, each new worker takes a free GPU in the master (pre_fork) and pins itself to
        it before loading the model (_post_fork); see worker/gpus.py."""
        devices = gpus.parse_env(os.environ)
        if not devices:
            return {}
        if self.config.preload_model:
            self.log.warning("gpu_pinning_off", devices=list(devices),
                             why="SMC_PRELOAD_MODEL=true loads one model in the master before workers exist")
            return {}

        def pre_fork(server: Any, worker: Any) -> None:
            in_use = [getattr(w, "smc_gpu", None) for w in server.WORKERS.values()]
            worker.smc_gpu = gpus.pick(devices, [d for d in in_use if d is not None])

        return {"pre_fork": pre_fork}

    def _worker_class(self) -> type | str:
        if self.config.asgi_app:
            # By name: uvicorn is imported only in ASGI mode. Its requests carry no busy marks, so
            # the drain relies on its window alone (worker/busy.py).
            return "supervisor_app.worker.asgi_worker.AsgiWorker"
        if self.config.multi_model:
            from supervisor_app.worker.mme.mme_worker import MmeWorker

            return MmeWorker
        if self.config.batch_size > 1:
            from supervisor_app.worker.batch_worker import BatchingWorker

            from supervisor_app.worker.adapter_worker import AdapterBatchingWorker

            return AdapterBatchingWorker  # requests on threads, so that batches can form
        from supervisor_app.worker.adapter_worker import AdapterWorker

        return AdapterWorker  # NginxWorker marking requests for the drain, following adapter loads

    def run(self) -> None:
        arbiter = HeartbeatArbiter(self)
        arbiter.notify_fd = self.notify_fd
        arbiter.oom = OomCounter()  # the baseline: a later SIGKILL is the OOM killer's only if it grew
        arbiter.run()

    def load(self) -> Any:
        """Runs in each worker (or once in the master with preload): import handler, load model;
        or import the user's own WSGI app (SMC_WSGI_APP)."""
        config = self.config
        if config.multi_model:
            return self._multi_model_app()
        if config.wsgi_app or config.asgi_app:
            spec, kind = (config.wsgi_app, "WSGI") if config.wsgi_app else (config.asgi_app, "ASGI")
            try:
                app = load_user_app(config.code_dir, spec, kind, config.code_dirs_searched, config.code_dir_rule)
            except AppLoadError as exc:
                self._fail("handler_import_failed", exc)
            self.log.info(f"{kind.lower()}_app_loaded", app=spec, code_dir=str(config.code_dir))
            return metrics.instrument(app) if kind == "WSGI" else app  # ASGI: metered in its worker (asgi_worker.py)
        try:
            handlers = handler_module.load_handlers(config.code_dir, config.module_name, config.code_dir_requested)
        except AppLoadError as exc:
            self._fail("handler_import_failed", exc)
        if config.batch_size > 1 and not handlers.has("batch_predict_fn"):
            self._fail("handler_import_failed", AppLoadError(
                f"batching is on (SMC_BATCH_SIZE or SAGEMAKER_TS_BATCH_SIZE = {config.batch_size}) but "
                f"{handlers.path.name} defines no batch_predict_fn",
                hint="add batch_predict_fn(inputs, model) returning one prediction per input, in order; or "
                "unset SMC_BATCH_SIZE/SAGEMAKER_TS_BATCH_SIZE to serve with predict_fn one request at a time",
            ))
        started = time.monotonic()
        try:
            model = handler_module.load_model(handlers, config.model_dir)
        except AppLoadError as exc:
            self._fail("model_load_failed", exc)
        metrics.model_loaded(time.monotonic() - started)
        service = handler_module.InferenceService(handlers, model, config.model_dir, config.default_accept)
        self.log.info("model_loaded", module=str(handlers.path), hooks=sorted(handlers.hooks))
        batching = config.batch_size > 1
        if batching:
            service.batcher = self.batcher = self._batcher(handlers, service)
        from supervisor_app.worker.adapters import with_adapters  # /adapters and the adapter header

        app = App(service, config.timeout_s, config.max_payload_bytes, execution_parameters(config, self.workers),
                  threaded=batching, sessions=self._sessions())
        return metrics.instrument(with_adapters(app, handlers.hooks, model, config, self.workers), threaded=batching)

    def _sessions(self) -> Any:
        """SAGEMAKER_ENABLE_STATEFUL_SESSIONS: the store every worker shares (worker/sessions/)."""
        from supervisor_app.worker.sessions.gate import Gate
        from supervisor_app.worker.sessions.store import SessionStore

        if self.config.sessions_path is None:
            return Gate(None)
        return Gate(SessionStore(self.config.sessions_path, self.config.sessions_expiration_s))

    def _batcher(self, handlers: Any, service: Any) -> Any:
        from functools import partial

        from supervisor_app.worker.batch_predict import run_batch
        from supervisor_app.worker.batching import Batcher

        config = self.config
        self.log.info("batching_on", batch_size=config.batch_size, batch_delay_ms=config.batch_delay_ms)
        return Batcher(partial(run_batch, service), config.batch_size, config.batch_delay_ms / 1000.0, config.timeout_s,
                       logs.get_logger("batcher"))

    def _multi_model_app(self) -> Any:
        """SAGEMAKER_MULTI_MODEL=true: no model at start; the /models API loads them (worker/mme)."""
        from supervisor_app.worker.mme.app import MmeApp
        from supervisor_app.worker.mme.registry import Registry

        assert self.config.multi_model is not None
        return metrics.instrument(MmeApp(self.config, self.config.multi_model, Registry(self.run_dir), self.workers,
                                         execution_parameters(self.config, self.workers)))

    def _fail(self, event: str, exc: AppLoadError) -> None:
        exc = _name_the_interpreter(exc, self.config)
        self.log.error(event, error=exc.message, hint=exc.hint, exc_info=exc.__cause__)
        notify(self.notify_fd, "app_load_failed", message=exc.message, hint=exc.hint)
        # gunicorn turns AppImportError into exit code 4 and halts instead of respawning.
        raise AppImportError(exc.message)


# What smc's embedded interpreter bundles: an image whose code relied on these without installing
# them in its own python3 serves under that python3 now, and is told the way back.
_BUNDLED_WITH_SMC = frozenset({"flask", "werkzeug", "jinja2", "itsdangerous", "click", "blinker", "markupsafe",
                               "structlog", "uvicorn", "h11", "wsproto"})


def _name_the_interpreter(exc: AppLoadError, config: WorkerSettings) -> AppLoadError:
    cause = exc.__cause__
    if config.embedded or not isinstance(cause, ModuleNotFoundError) or not cause.name:
        return exc
    missing = cause.name.split(".")[0]
    hint = f"{exc.hint}; {missing} is not installed for {sys.executable}, the Python serving (SMC_PYTHON)"
    if missing in _BUNDLED_WITH_SMC:
        hint += f": install it there, or set SMC_PYTHON=embedded to serve with smc's own Python, which bundles {missing}"
    else:
        hint += f": install it there ({sys.executable} -m pip install {missing})"
    named = AppLoadError(exc.message, hint=hint)
    named.__cause__ = cause
    return named


def _worker_ready(worker: Any, notify_fd: int) -> None:
    if hasattr(worker, "on_serving"):
        # ASGI: ready once uvicorn serves, i.e. after the app's lifespan startup loaded the model.
        worker.on_serving = lambda: notify(notify_fd, "worker_ready")
        worker.on_startup_failed = lambda message, hint: notify(notify_fd, "app_load_failed", message=message,
                                                                hint=hint)
    else:
        notify(notify_fd, "worker_ready")


def run_master(config: WorkerSettings, environ: dict[str, str] | Any, notify_fd: int) -> int:
    if config.embedded:  # SMC_PREFIX's packages were installed for smc's own interpreter only
        usersite.prepare(config.prefix, environ)
    route_user_logging(config.log_level)
    metrics.configure(config.run_dir / metrics_layout.DIR_NAME)  # exists only when smc serve exports metrics
    os.set_inheritable(notify_fd, False)  # user subprocesses need not hold the supervisor's pipe
    os.set_blocking(notify_fd, False)  # a stalled supervisor must not stall the master: drop the line
    # stdout is smc's pipe: line buffering makes each print() of user code a line at once.
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(line_buffering=True)
    try:
        ModelServer(config, notify_fd).run()
    except AppImportError:
        return exitcodes.APP_LOAD  # preload: the master itself failed to load the model
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else exitcodes.FAILURE)
    return exitcodes.OK


__all__ = ["ModelServer", "notify", "run_master"]
