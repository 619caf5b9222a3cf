"""LoRA adapters in handler mode: /adapters and X-Amzn-SageMaker-Adapter-Identifier in front of
the single-model App, with the user's optional hooks

  load_adapter_fn(name, src, model)   -> anything (kept per worker, as context.adapter_model)
  unload_adapter_fn(name, model)

run in EVERY gunicorn worker, as multi-model loads are, through the same file registry in the
run dir (worker/mme/registry.py, directory "adapters") and SIGUSR2 to the siblings:

  POST /adapters {name, src}   staged; every worker runs load_adapter_fn at the same time; 200
                               once all have it (committed), else every worker drops it and the
                               answer names the worker and the cause. 409 for a name already
                               there, 400/404 for bad input (worker/adapter_requests.py).
  DELETE /adapters/{name}      removed from the registry (new invocations naming it: 404), then
                               each worker runs unload_adapter_fn between requests: one in the
                               middle of a request using it finishes that request first. The
                               answer waits for all of them (at most the sync timeout).
  GET /adapters[/{name}]       {"adapters": [{"name", "src"}]} / {"name", "src"}
  an invocation naming one     404 naming it if not loaded; else context.adapter is its name

`src` reaches load_adapter_fn as an absolute path when it is local (relative ones are inside the
model directory; 404 when nothing is there); s3:// and other URLs as given, the hook's to fetch. Invocations without the header cost one dict lookup here.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from supervisor_app import logs
from supervisor_app.worker.adapter_requests import (
    ALIAS_ENVIRON,
    IDENTIFIER_ENVIRON,
    MAX_CONTROL_BODY_BYTES,
    AdapterError,
    as_aliased,
    check_name,
    error_json,
    local_path,
    name_in_path,
    parse_registration,
    unknown_adapter,
)
from supervisor_app.worker.mme.registry import Registry, failures, follow

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
ADAPTER_ENVIRON = "smc.adapter"  # the adapter's name, for App to put on the Context
ADAPTER_MODEL_ENVIRON = "smc.adapter_model"
_current: AdapterApp | None = None  # this worker's, for the worker class's SIGUSR2 sync


def current() -> AdapterApp | None:
    return _current


def _answer(start_response: StartResponse, status: int, payload: Any, content_type: str = "application/json",
            extra: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", content_type), ("Content-Length", str(len(body)))] + (extra or []))
    return [body]


def _error(start_response: StartResponse, exc: AdapterError, extra: list[tuple[str, str]] | None = None
           ) -> Iterable[bytes]:
    return _answer(start_response, exc.status, error_json(exc.status, exc.message), extra=extra)


class AdapterApp:
    def __init__(self, inner: Callable[..., Iterable[bytes]], hooks: dict[str, Callable[..., Any]], model: Any,
                 model_dir: str, registry: Registry, workers: int, sync_timeout_s: float) -> None:
        global _current
        self.inner = inner
        self.load_fn = hooks.get("load_adapter_fn")
        self.unload_fn = hooks.get("unload_adapter_fn")
        self.model = model
        self.model_dir = model_dir
        self.registry = registry
        self.workers = workers
        self.sync_timeout_s = sync_timeout_s
        self.loaded: dict[str, Any] = {}  # name -> load_adapter_fn's result, staged or committed
        self.visible: set[str] = set()  # committed: invocations are answered
        self.failed: dict[str, str] = {}
        self.generation = -1
        self.heartbeat: Callable[[], None] = lambda: None
        self.log = logs.get_logger("adapters")
        _current = self

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/invocations":
            name = environ.get(IDENTIFIER_ENVIRON)
            if name is None:
                return self.inner(environ, start_response)  # the hot path
            return self._invoke(name, environ, start_response)
        if path == "/adapters" or path.startswith("/adapters/"):
            try:
                return self._control(path, environ, start_response)
            except AdapterError as exc:
                if exc.status >= 500:
                    self.log.error("adapter_request_failed", status=exc.status, error=exc.message)
                return _error(start_response, exc)
        return self.inner(environ, start_response)

    # -- invocations ---------------------------------------------------------------------------------
    def _invoke(self, name: str, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            check_name(name, "X-Amzn-SageMaker-Adapter-Identifier")
            if name not in self.visible:
                self.sync()  # a worker that has not caught up yet loads before it answers
            if name not in self.visible:
                raise unknown_adapter(name, loading=name in self.loaded)
        except AdapterError as exc:
            return _error(start_response, exc)
        environ[ADAPTER_ENVIRON] = name
        environ[ADAPTER_MODEL_ENVIRON] = self.loaded.get(name)
        return self.inner(environ, start_response)

    # -- /adapters -----------------------------------------------------------------------------------
    def _control(self, path: str, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            name = name_in_path(path.encode("latin-1").decode("utf-8"))
        except UnicodeError:
            raise AdapterError(400, f"{path!r}: an adapter name is plain ASCII") from None
        if method in ("GET", "HEAD"):
            models = self.registry.read().models
            if name is None:
                return _answer(start_response, 200, {"adapters": [{"name": n, "src": models[n]["src"]}
                                                                  for n in sorted(models)]})
            if name not in models:
                raise AdapterError(404, f"adapter {name!r} is not loaded")
            return _answer(start_response, 200, {"name": name, "src": models[name]["src"]})
        if method == "POST" and name is None:
            text = as_aliased(self._register(environ), environ.get(ALIAS_ENVIRON))
            return _answer(start_response, 200, text.encode(), "text/plain; charset=utf-8")
        if method == "DELETE" and name is not None:
            text = as_aliased(self._unregister(name), environ.get(ALIAS_ENVIRON))
            return _answer(start_response, 200, text.encode(), "text/plain; charset=utf-8")
        allowed = "GET, POST" if name is None else "GET, DELETE"
        return _error(start_response, AdapterError(405, f"{method} not allowed on {path}; use {allowed}"),
                      [("Allow", allowed)])

    def _register(self, environ: Environ) -> str:
        if self.load_fn is None:
            raise AdapterError(501, "this handler serves no LoRA adapters: add load_adapter_fn(name, src, model) "
                                    "(and unload_adapter_fn(name, model)) to inference.py; see docs/serve.md")
        length = environ.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > MAX_CONTROL_BODY_BYTES:
            raise AdapterError(413, f"POST /adapters bodies are small JSON objects; got {length} bytes")
        body = environ["wsgi.input"].read(int(length) if length.isdigit() else MAX_CONTROL_BODY_BYTES)
        request = parse_registration(body, environ.get("QUERY_STRING", ""))
        path = request.src
        if "://" not in path or path.startswith("file://"):
            path = local_path(path, self.model_dir)  # absolute; 404 naming it when nothing is there
        name = request.name
        started = time.monotonic()
        with self.registry.locked():
            snapshot = self.registry.read()
            if name in snapshot.models or name in snapshot.live_staged():
                raise AdapterError(409, f"adapter {name!r} is already loaded; DELETE /adapters/{name} first "
                                        "to load another src under that name")
            snapshot.staged[name] = {"src": request.src, "path": path, "owner": os.getpid()}
            staged = self.registry.publish(snapshot)
        self.registry.signal_siblings()  # they load it while this worker does
        why = self._load_here(name, path)
        if why is None:
            failures = self._follow(staged, name)
            if failures:
                pid, reason = next(iter(failures.items()))
                why = f"adapter {name!r} loaded in worker {os.getpid()} but not in worker {pid}: {reason}"
        if why is not None:
            self._unstage(name)
            raise AdapterError(500, why)
        with self.registry.locked():
            snapshot = self.registry.read()
            snapshot.staged.pop(name, None)
            snapshot.models[name] = {"src": request.src, "path": path}
            committed = self.registry.publish(snapshot)
        self._follow(committed, None)
        self.log.info("adapter_loaded", adapter=name, src=request.src, workers=self.workers,
                      load_s=round(time.monotonic() - started, 4))
        return f"Adapter {name} registered"

    def _unregister(self, name: str) -> str:
        with self.registry.locked():
            snapshot = self.registry.read()
            if name not in snapshot.models:
                raise AdapterError(404, f"adapter {name!r} is not loaded")
            del snapshot.models[name]
            target = self.registry.publish(snapshot)
        started = time.monotonic()
        self._follow(target, None)
        self.log.info("adapter_unloaded", adapter=name, unload_s=round(time.monotonic() - started, 4))
        return f"Adapter {name} unregistered"

    def _unstage(self, name: str) -> None:
        with self.registry.locked():
            snapshot = self.registry.read()
            snapshot.staged.pop(name, None)
            target = self.registry.publish(snapshot)
        self._follow(target, None)

    # -- this worker, in step with the registry ----------------------------------------------------------
    def _load_here(self, name: str, src: str) -> str | None:
        """Run load_adapter_fn in this worker; None, or why it failed."""
        if self.load_fn is None:
            return "inference.py defines no load_adapter_fn"
        try:
            self.loaded[name] = self.load_fn(name, src, self.model)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self.log.error("adapter_load_failed", adapter=name, src=src, worker_pid=os.getpid(),
                           error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            return f"load_adapter_fn raised {type(exc).__name__}: {exc}"
        return None

    def _unload_here(self, name: str) -> None:
        self.loaded.pop(name, None)
        self.visible.discard(name)
        if self.unload_fn is None:
            return
        try:
            self.unload_fn(name, self.model)
        except Exception as exc:  # the adapter is gone from the registry all the same
            self.log.error("adapter_unload_failed", adapter=name, worker_pid=os.getpid(),
                           error=f"{type(exc).__name__}: {exc}", exc_info=exc)

    def sync(self) -> None:
        """Load what the registry has and this worker lacks, unload what it no longer has."""
        if self.generation < 0:
            self.registry.report(-1, {})  # be counted (and signalled) before reading the registry
        snapshot = self.registry.read()
        if snapshot.generation == self.generation:
            return
        wanted = {**snapshot.live_staged(), **snapshot.models}
        for name in list(self.loaded):
            if name not in wanted:
                self._unload_here(name)
        for name, entry in wanted.items():
            if name in self.loaded or name in self.failed:
                continue
            self.heartbeat()
            why = self._load_here(name, entry.get("path", entry["src"]))
            if why is not None:
                self.failed[name] = why
        self.failed = {n: f for n, f in self.failed.items() if n in wanted}
        self.visible = set(snapshot.models) & set(self.loaded)
        self.generation = snapshot.generation
        self.registry.report(self.generation, dict(self.failed))

    def _follow(self, target: int, name: str | None) -> dict[int, str]:
        def slow(behind: list[int]) -> None:
            self.log.warning("adapter_sync_slow", behind=behind, target=target, waited_s=self.sync_timeout_s,
                             why="busy workers load or unload after the request they are in")

        return failures(follow(self.registry, target, self.sync, self.workers, self.sync_timeout_s,
                               lambda: self.heartbeat(), slow), name)


def with_adapters(app: Callable[..., Iterable[bytes]], hooks: dict[str, Callable[..., Any]], model: Any,
                  config: Any, workers: int) -> AdapterApp:
    """The single-model App behind /adapters; without load_adapter_fn, /adapters says to add it."""
    return AdapterApp(app, hooks, model, str(config.model_dir), Registry(config.run_dir, "adapters"), workers,
                      config.timeout_s + 10)


__all__ = ["ADAPTER_ENVIRON", "ADAPTER_MODEL_ENVIRON", "AdapterApp", "current", "with_adapters"]
