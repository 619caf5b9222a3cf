"""The WSGI app of a multi-model endpoint (SAGEMAKER_MULTI_MODEL=true): the /models API.

  GET    /models[?max_results=N&next_page_token=T]   {"models": [{"modelName", "modelUrl"}], "nextPageToken"?}
  POST   /models {"model_name", "url"}                load in every worker, then 200
  GET    /models/{name}                               {"modelName", "modelUrl"}
  DELETE /models/{name}                               unload in every worker, then 200
  POST   /models/{name}/invoke                        as /invocations, with that model

Load strategy (docs/multi-model.md has the measurements): the worker that takes POST /models
stages the model in the registry and wakes the other workers (SIGUSR2); all of them import the
handler and run model_fn at the same time. When every worker has it, the load is committed
(invokes see it) and answered 200; when one fails, every worker drops it and the answer names
the model and the cause. A worker busy with a long request follows after it (at most
SMC_MME_SYNC_SECONDS is waited for it) and loads before its next request. Unload is the same in
reverse. Invocations reuse the single-model App per model, so negotiation, errors, timeouts
and logging are the same code.
"""

from __future__ import annotations

import gc
import json
import os
import time
from collections.abc import Callable, Iterable
from http import HTTPStatus
from pathlib import Path
from typing import Any


from supervisor_app import logs
from supervisor_app.worker.settings import MmeSettings, WorkerSettings
from supervisor_app.errors import AppLoadError
from supervisor_app.worker.mme import memory
from supervisor_app.worker.mme import models as model_module
from supervisor_app.worker.mme.models import LoadedModel
from supervisor_app.worker.mme.registry import Registry, failures, follow
from supervisor_app.worker.mme.requests import RequestError, check_name, page, parse_load
from supervisor_app.worker.wsgi import App, error_body

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
_MAX_CONTROL_BODY = 64 * 1024
_MIB = 1024 * 1024
_BOUND = ("model", "target_model")


def _json(start_response: StartResponse, status: int, payload: Any,
          headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    body = json.dumps(payload).encode()
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + (headers or []))
    return [body]


def _error(start_response: StartResponse, status: int, message: str,
           headers: list[tuple[str, str]] | None = None) -> Iterable[bytes]:
    body = error_body(status, message)
    start_response(f"{status} {HTTPStatus(status).phrase}",
                   [("Content-Type", "application/json"), ("Content-Length", str(len(body)))] + (headers or []))
    return [body]


class MmeApp:
    def __init__(self, config: WorkerSettings, mme: MmeSettings, registry: Registry, workers: int,
                 execution_parameters: dict[str, Any]) -> None:
        self.config = config
        self.mme = mme
        self.registry = registry
        self.workers = workers
        self.execution_defaults = execution_parameters
        self.sync_timeout_s = mme.sync_timeout_s or config.timeout_s + 10
        self.models: dict[str, LoadedModel] = {}  # staged or committed
        self.visible: set[str] = set()  # committed: invokes are answered
        self.invoke_routes: dict[str, LoadedModel] = {}  # "/models/NAME/invoke" of the visible ones
        self.failed: dict[str, tuple[str, str]] = {}  # name -> (url, why it failed to load here)
        self.generation = -1
        self.heartbeat: Callable[[], None] = lambda: None  # the worker's, set by MmeWorker
        self.log = logs.get_logger("mme")

    # -- routing ---------------------------------------------------------------------------------
    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        fast = self.invoke_routes.get(path)
        if fast is not None and method == "POST":
            return self._call_model(fast, environ, start_response)  # the hot path: one dict lookup
        if path == "/models":
            if method == "GET":
                return self._list(environ, start_response)
            if method == "POST":
                return self._load(environ, start_response)
            return self._not_allowed(start_response, method, path, ("GET", "POST"))
        if path.startswith("/models/"):
            rest = path[len("/models/"):]
            invoke = rest.endswith("/invoke")
            try:
                # PATH_INFO is the path's bytes read as Latin-1 (PEP 3333); names are UTF-8 on the wire.
                name = (rest[: -len("/invoke")] if invoke else rest).encode("latin-1").decode("utf-8")
            except UnicodeError:
                return _error(start_response, 404, f"no route {path!r}: a model name in a path is UTF-8, "
                                                   "percent-encoded or not")
            try:
                check_name(name)
            except RequestError:
                return _error(start_response, 404, f"no route {path!r}: model names cannot contain '/'")
            if invoke:
                if method != "POST":
                    return self._not_allowed(start_response, method, path, ("POST",))
                return self._invoke(name, environ, start_response)
            if method in ("GET", "HEAD"):
                return self._describe(name, start_response)
            if method == "DELETE":
                return self._unload(name, start_response)
            return self._not_allowed(start_response, method, path, ("GET", "DELETE"))
        if path == "/ping":
            start_response("200 OK", [("Content-Length", "0")])
            return [b""]
        if path == "/invocations":
            return _error(start_response, 400, "this is a multi-model endpoint (SAGEMAKER_MULTI_MODEL=true): "
                                               "invoke a loaded model with POST /models/{name}/invoke")
        if path == "/execution-parameters":
            return _json(start_response, 200, self.execution_defaults)
        return _error(start_response, 404, f"no route {path!r}; routes: /ping, /models, /models/{{name}}, "
                                           "/models/{name}/invoke, /execution-parameters")

    @staticmethod
    def _not_allowed(start_response: StartResponse, method: str, path: str, allowed: tuple[str, ...]) -> Iterable[bytes]:
        return _error(start_response, 405, f"{method} not allowed on {path}; use {', '.join(allowed)}",
                      [("Allow", ", ".join(allowed))])

    # -- read-only routes: the registry is the truth every worker shares --------------------------
    def _list(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        query = _query(environ.get("QUERY_STRING", ""))
        snapshot = self.registry.read()
        try:
            names, token = page(sorted(snapshot.models), query.get("max_results") or query.get("limit"),
                                query.get("next_page_token"))
        except RequestError as exc:
            return _error(start_response, exc.status, exc.message)
        answer: dict[str, Any] = {"models": [{"modelName": n, "modelUrl": snapshot.models[n]["url"]} for n in names]}
        if token is not None:
            answer["nextPageToken"] = token
        return _json(start_response, 200, answer)

    def _describe(self, name: str, start_response: StartResponse) -> Iterable[bytes]:
        entry = self.registry.read().models.get(name)
        if entry is None:
            return _error(start_response, 404, f"Model not found: {name}")
        return _json(start_response, 200, {"modelName": name, "modelUrl": entry["url"]})

    # -- load ------------------------------------------------------------------------------------
    def _load(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        length = environ.get("CONTENT_LENGTH") or "0"
        if length.isdigit() and int(length) > _MAX_CONTROL_BODY:
            return _error(start_response, 413, f"POST /models bodies are small JSON objects; got {length} bytes")
        body = environ["wsgi.input"].read(int(length) if length.isdigit() else _MAX_CONTROL_BODY)
        try:
            request = parse_load(body, self.mme.model_roots)
        except RequestError as exc:
            self.log.warning("mme_load_rejected", status=exc.status, error=exc.message)
            return _error(start_response, exc.status, exc.message)
        name = request.name
        refused = self._memory_refusal(name, 0)
        if refused:
            return _error(start_response, 507, refused)
        started = time.monotonic()
        entry = {"url": request.url, "path": str(request.path)}
        with self.registry.locked():
            snapshot = self.registry.read()
            if name in snapshot.models or name in snapshot.live_staged():
                return _error(start_response, 409, f"Model {name} is already registered.")
            snapshot.staged[name] = {**entry, "owner": os.getpid()}
            staged = self.registry.publish(snapshot)
        self.registry.signal_siblings()  # they load it while this worker does
        before = memory.rss_bytes(os.getpid())
        status, why = 0, ""
        try:
            loaded = model_module.load(name, request.url, request.path, self.config.module_name,
                                       self.mme.handler_dirs, self.config.default_accept)
        except MemoryError:
            status, why = 507, f"model {name}: out of memory while loading"
        except AppLoadError as exc:
            status, why = 500, f"model {name} could not be loaded: {exc.message}"
            self.log.error("mme_load_failed", model=name, url=request.url, error=exc.message, exc_info=exc.__cause__)
        if not status:
            load_s = time.monotonic() - started
            per_worker = max(memory.rss_bytes(os.getpid()) - before, 0)
            refused = self._memory_refusal(name, per_worker * (self.workers - 1))
            if refused:
                model_module.unload(loaded)
                status, why = 507, refused
        if status:
            self._unstage(name)
            return _error(start_response, status, why)
        loaded.app = self._model_app(loaded)
        self.models[name] = loaded
        failures = self._follow(staged, name)
        if failures:
            pid, reason = next(iter(failures.items()))
            self._unstage(name)
            return _error(start_response, 507 if "MemoryError" in reason else 500,
                          f"model {name} loaded in worker {os.getpid()} but not in worker {pid}: {reason}")
        with self.registry.locked():
            snapshot = self.registry.read()
            snapshot.staged.pop(name, None)
            snapshot.models[name] = entry
            committed = self.registry.publish(snapshot)
        self._follow(committed, None)
        self.log.info("mme_model_loaded", model=name, url=request.url, load_s=round(load_s, 4),
                      total_s=round(time.monotonic() - started, 4), rss_mib=round(per_worker / _MIB, 1))
        return _json(start_response, 200, {"status": f'Model "{name}" loaded'})

    def _unstage(self, name: str) -> None:
        """Take back a staged load that failed somewhere: every worker drops it again."""
        with self.registry.locked():
            snapshot = self.registry.read()
            snapshot.staged.pop(name, None)
            target = self.registry.publish(snapshot)
        self._drop(name)
        self._follow(target, None)

    def _memory_refusal(self, name: str, more_bytes: int) -> str | None:
        used, allowed = memory.budget(self.mme.memory_limit_mb, self.mme.memory_headroom_mb)
        if allowed and used + more_bytes <= allowed:
            return None
        self.log.warning("mme_memory_full", model=name, used_mib=round(used / _MIB), allowed_mib=round(allowed / _MIB),
                         needed_mib=round(more_bytes / _MIB))
        return (f"not enough memory to load model {name}: {used // _MIB} MiB in use"
                + (f", about {more_bytes // _MIB} MiB more for the other workers" if more_bytes else "")
                + f", {allowed // _MIB} MiB allowed (limit minus SMC_MME_MEMORY_HEADROOM_MB); unload a model")

    def _model_app(self, loaded: LoadedModel) -> App:
        config = self.config
        return App(loaded.service, config.timeout_s, config.max_payload_bytes, self.execution_defaults)

    # -- unload ----------------------------------------------------------------------------------
    def _unload(self, name: str, start_response: StartResponse) -> Iterable[bytes]:
        with self.registry.locked():
            snapshot = self.registry.read()
            if name not in snapshot.models:
                return _error(start_response, 404, f"Model not found: {name}")
            del snapshot.models[name]
            target = self.registry.publish(snapshot)
        started = time.monotonic()
        self.registry.signal_siblings()  # they free it while this worker does
        self._drop(name)
        self._follow(target, None)
        self.log.info("mme_model_unloaded", model=name, unload_s=round(time.monotonic() - started, 4))
        return _json(start_response, 200, {"status": f'Model "{name}" unregistered'})

    def _route(self) -> None:
        # Keyed as PATH_INFO spells them: the UTF-8 bytes read as Latin-1 (the same text for ASCII names).
        self.invoke_routes = {f"/models/{name}/invoke".encode().decode("latin-1"): self.models[name]
                              for name in self.visible}

    def _drop(self, name: str) -> None:
        loaded = self.models.pop(name, None)
        self.failed.pop(name, None)
        self.visible.discard(name)
        self._route()
        if loaded is not None:
            model_module.unload(loaded)

    # -- invoke ----------------------------------------------------------------------------------
    def _invoke(self, name: str, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        if name not in self.visible:
            self.sync()  # a worker that has not caught up yet loads before it answers
        loaded = self.models.get(name) if name in self.visible else None
        if loaded is None:
            failure = self.failed.get(name)
            if failure:
                return _error(start_response, 500, f"model {name} failed to load in this worker: {failure[1]}")
            loading = " (it is being loaded)" if name in self.models else ""
            return _error(start_response, 404, f"Model not found: {name}{loading}")
        return self._call_model(loaded, environ, start_response)

    @staticmethod
    def _call_model(loaded: LoadedModel, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        name = loaded.name
        environ["PATH_INFO"] = "/invocations"
        target = environ.get("HTTP_X_AMZN_SAGEMAKER_TARGET_MODEL")
        # Only the keys there are: binding costs microseconds per request on the invoke path.
        if target:
            logs.bind_context(model=name, target_model=target)
        else:
            logs.bind_context(model=name)
        try:
            return loaded.app(environ, start_response)
        finally:
            logs.unbind_context(*_BOUND if target else _BOUND[:1])

    # -- keeping this worker in step with the registry ---------------------------------------------
    def sync(self) -> None:
        """Load what the registry has and this worker lacks, unload what it no longer has."""
        if self.generation < 0:
            # The server's own objects never become garbage: freezing them keeps the collection
            # an unload runs down to what models allocated (~100 ms less per unload, measured).
            gc.freeze()
            self.registry.report(-1, {})  # be counted (and signalled) before reading the registry
        snapshot = self.registry.read()
        if snapshot.generation == self.generation:
            return
        started = time.monotonic()
        loaded, unloaded = [], []
        wanted = {**snapshot.live_staged(), **snapshot.models}  # staged: load now, answer after the commit
        for name in list(self.models):
            entry = wanted.get(name)
            if entry is None or entry["url"] != self.models[name].url:
                self._drop(name)
                unloaded.append(name)
        for name, entry in wanted.items():
            if name in self.models or self.failed.get(name, ("",))[0] == entry["url"]:
                continue
            self.heartbeat()
            try:
                model = model_module.load(name, entry["url"], Path(entry["path"]), self.config.module_name,
                                          self.mme.handler_dirs, self.config.default_accept)
            except (AppLoadError, MemoryError) as exc:
                why = exc.message if isinstance(exc, AppLoadError) else "MemoryError while loading"
                self.failed[name] = (entry["url"], why)
                self.log.error("mme_load_failed", model=name, url=entry["url"], error=why)
                continue
            model.app = self._model_app(model)
            self.models[name] = model
            loaded.append(name)
        self.failed = {n: f for n, f in self.failed.items() if n in wanted}
        self.visible = set(snapshot.models) & set(self.models)
        self._route()
        self.generation = snapshot.generation
        self.registry.report(self.generation, {n: f[1] for n, f in self.failed.items()})
        if loaded or unloaded:
            self.log.info("mme_worker_synced", generation=self.generation, loaded=loaded, unloaded=unloaded,
                          sync_s=round(time.monotonic() - started, 4))

    def _follow(self, target: int, name: str | None) -> dict[int, str]:
        """Wake the other workers and wait until each has applied generation `target`; returns
        {pid: why} for workers that could not load `name`."""
        def slow(behind: list[int]) -> None:
            self.log.warning("mme_sync_slow", behind=behind, target=target, waited_s=self.sync_timeout_s,
                             why="busy workers load or unload before their next request")

        return failures(follow(self.registry, target, self.sync, self.workers, self.sync_timeout_s,
                               lambda: self.heartbeat(), slow), name)


def _query(text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(text))
