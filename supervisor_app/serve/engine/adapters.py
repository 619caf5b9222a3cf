"""SMC_ENGINE_ADAPTERS=vllm|sglang: smc keeps the set of loaded LoRA adapters and turns
SageMaker's adapter contract into the engine's own routes.

  POST /adapters {name, src}   src fetched (adapter_sources.py), then the engine's load route:
                               vllm   POST /v1/load_lora_adapter {"lora_name", "lora_path"}
                               sglang POST /load_lora_adapter     {"lora_name", "lora_path"}
                               200; 409 for a name already loaded (or loading); the engine's own
                               status and words when it refuses
  DELETE /adapters/{name}      new invocations naming it get 404 at once; the ones in flight are
                               waited for (at most SAGEMAKER_MODEL_SERVER_TIMEOUT: no request
                               runs longer), then the engine's unload route; 404 if not loaded
  GET /adapters[/{name}]       {"adapters": [{"name", "src"}]} / {"name", "src"}
  an invocation naming one     `model` in its JSON body: vllm `<name>`, sglang `<base>:<name>`
                               (base: the body's own `model`, else the engine's first /v1/models id)

When the engine restarts (smc supervises it), its adapters are gone: each loaded one is loaded
again as soon as the new engine is healthy, and invocations naming one wait for that (bounded
by the same timeout) instead of reaching an engine that does not know it. One that fails to
load again is dropped from the set, logged, and answers 404 from then on.

State lives in the smc process (the proxy's threads and the supervisor's), under one lock.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor_app.config.archive import ArchiveLimits
from supervisor_app.serve.engine import adapter_sources
from supervisor_app.worker.adapter_requests import AdapterError, Registration, unknown_adapter


@dataclass(frozen=True)
class Dialect:
    load_path: str
    unload_path: str
    separator: str | None  # None: `model` is the adapter's name; else `<base><separator><name>`


DIALECTS = {
    "vllm": Dialect("/v1/load_lora_adapter", "/v1/unload_lora_adapter", None),
    "sglang": Dialect("/load_lora_adapter", "/unload_lora_adapter", ":"),
}


@dataclass
class Adapter:
    name: str
    src: str
    source: adapter_sources.Source | None = None
    state: str = "loading"  # loading | loaded | reloading | unloading
    in_flight: int = 0
    settled: threading.Event = field(default_factory=threading.Event)  # set when not loading/reloading


# (status, body bytes) of an engine call; raises OSError when the engine cannot be reached.
EngineCall = Callable[[str, str, bytes | None, float], tuple[int, bytes]]


def engine_call(host: str, port: int) -> EngineCall:
    def call(method: str, path: str, body: bytes | None, timeout_s: float) -> tuple[int, bytes]:
        import http.client

        conn = http.client.HTTPConnection(host, port, timeout=timeout_s)
        try:
            conn.request(method, path, body=body,
                         headers={"Content-Type": "application/json"} if body is not None else {})
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            conn.close()
    return call


class Adapters:
    def __init__(self, mode: str, call: EngineCall, *, model_dir: Path, unpack_root: Path, limits: ArchiveLimits,
                 environ: dict[str, str], timeout_s: float, log: Any) -> None:
        self.mode = mode
        self.dialect = DIALECTS[mode]
        self.call = call
        self.model_dir = model_dir
        self.unpack_root = unpack_root
        self.limits = limits
        self.environ = environ
        self.timeout_s = timeout_s
        self.log = log
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._adapters: dict[str, Adapter] = {}
        self._base_model: str | None = None
        self._engine_seen = False

    # -- control routes ----------------------------------------------------------------------------
    def listing(self) -> list[dict[str, str]]:
        with self._lock:
            return [{"name": a.name, "src": a.src} for a in sorted(self._adapters.values(), key=lambda a: a.name)
                    if a.state in ("loaded", "reloading")]

    def describe(self, name: str) -> dict[str, str]:
        with self._lock:
            adapter = self._adapters.get(name)
            if adapter is None or adapter.state not in ("loaded", "reloading"):
                raise AdapterError(404, f"adapter {name!r} is not loaded")
            return {"name": adapter.name, "src": adapter.src}

    def register(self, request: Registration) -> str:
        name = request.name
        with self._lock:
            if name in self._adapters:
                state = self._adapters[name].state
                raise AdapterError(409, f"adapter {name!r} is already {'loaded' if state == 'loaded' else state}; "
                                        f"DELETE /adapters/{name} first to load another src under that name")
            adapter = self._adapters[name] = Adapter(name, request.src)
        started = time.monotonic()
        try:
            adapter.source = adapter_sources.fetch(name, request.src, self.model_dir, self.unpack_root,
                                                   self.limits, self.environ)
            self._engine_load(adapter)
        except BaseException as exc:
            with self._lock:
                self._adapters.pop(name, None)
            if adapter.source is not None:
                adapter_sources.remove(adapter.source)
            status = exc.status if isinstance(exc, AdapterError) else 500
            self.log.warning("adapter_load_failed", adapter=name, src=request.src, status=status,
                             error=getattr(exc, "message", str(exc)))
            raise
        with self._lock:
            adapter.state = "loaded"
            adapter.settled.set()
        self.log.info("adapter_loaded", adapter=name, src=request.src, path=adapter.source.path,
                      load_s=round(time.monotonic() - started, 4))
        return f"Adapter {name} registered"

    def unregister(self, name: str) -> str:
        with self._lock:
            adapter = self._adapters.get(name)
            if adapter is None or adapter.state not in ("loaded", "reloading"):
                raise AdapterError(404, f"adapter {name!r} is not loaded" +
                                   (f" (it is {adapter.state})" if adapter else ""))
            adapter.state = "unloading"  # from here, new invocations naming it get 404
            deadline = time.monotonic() + self.timeout_s
            while adapter.in_flight and time.monotonic() < deadline:
                self._changed.wait(deadline - time.monotonic())
            waited_out = adapter.in_flight
        if waited_out:
            self.log.warning("adapter_unload_busy", adapter=name, in_flight=waited_out, waited_s=self.timeout_s)
        try:
            status, body = self._engine("unload", self.dialect.unload_path, {"lora_name": name})
        except AdapterError:
            with self._lock:
                adapter.state = "loaded"
            raise
        if status >= 300 and status != 404:  # 404: the engine no longer has it (restarted): gone all the same
            with self._lock:
                adapter.state = "loaded"
            raise AdapterError(status, f"the engine refused to unload adapter {name!r} "
                                       f"({self.dialect.unload_path} answered {status}): {_words(body)}")
        with self._lock:
            self._adapters.pop(name, None)
        if adapter.source is not None:
            adapter_sources.remove(adapter.source)
        self.log.info("adapter_unloaded", adapter=name, waited_for_requests=bool(waited_out))
        return f"Adapter {name} unregistered"

    # -- invocations --------------------------------------------------------------------------------
    def acquire(self, name: str) -> Adapter:
        """Count an invocation in; 404 when `name` is not (or no longer) loaded. Waits, bounded,
        for an adapter being loaded again after an engine restart."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            with self._lock:
                adapter = self._adapters.get(name)
                if adapter is None or adapter.state in ("unloading", "loading"):
                    raise unknown_adapter(name, loading=adapter is not None and adapter.state == "loading")
                if adapter.state == "loaded":
                    adapter.in_flight += 1
                    return adapter
            if not adapter.settled.wait(max(0.0, deadline - time.monotonic())):
                raise AdapterError(503, f"adapter {name!r} is being loaded again after an engine restart; retry")

    def release(self, adapter: Adapter) -> None:
        with self._lock:
            adapter.in_flight -= 1
            if not adapter.in_flight:
                self._changed.notify_all()

    def model_field(self, name: str, body_model: object) -> str:
        if self.dialect.separator is None:
            return name
        base = body_model if isinstance(body_model, str) and body_model else self.base_model()
        return f"{base}{self.dialect.separator}{name}"

    def base_model(self) -> str:
        """The engine's served model (SGLang's `<base>:<adapter>` needs it), asked once per start."""
        if self._base_model is None:
            status, body = self._engine_get("/v1/models")
            try:
                self._base_model = str(json.loads(body)["data"][0]["id"]) if status == 200 else None
            except (ValueError, KeyError, IndexError, TypeError):
                self._base_model = None
            if self._base_model is None:
                raise AdapterError(502, "cannot name the base model for `model: <base>:<adapter>`: the engine's "
                                        f"GET /v1/models answered {status} ({_words(body)}); send `model` in the body")
        return self._base_model

    # -- engine lifecycle -----------------------------------------------------------------------------
    def engine_started(self, generation: int) -> None:
        """Called by the supervisor when an engine start first turns healthy (before /ping is 200)."""
        self._base_model = None
        if not self._engine_seen:  # the first healthy start (not generation 1: that one may have crashed)
            self._engine_seen = True
            threading.Thread(target=self.check_engine_routes, name="smc-adapter-routes", daemon=True).start()
            return
        with self._lock:
            pending = [a for a in self._adapters.values() if a.state == "loaded"]
            for adapter in pending:
                adapter.state = "reloading"
                adapter.settled.clear()
        if pending:
            threading.Thread(target=self._reload, args=(pending,), name="smc-adapter-reload", daemon=True).start()

    def _reload(self, pending: list[Adapter]) -> None:
        for adapter in pending:
            try:
                self._engine_load(adapter)
            except AdapterError as exc:
                self.log.error("adapter_reload_failed", adapter=adapter.name, src=adapter.src, error=exc.message,
                               consequence="dropped: invocations naming it answer 404 until it is loaded again")
                with self._lock:
                    self._adapters.pop(adapter.name, None)
                adapter.settled.set()
                continue
            with self._lock:
                if adapter.state == "reloading":
                    adapter.state = "loaded"
            adapter.settled.set()
            self.log.info("adapter_reloaded", adapter=adapter.name, why="the engine restarted")

    def check_engine_routes(self) -> None:
        """SMC_ENGINE_ADAPTERS needs the engine's load route: a request without a name shows
        whether it exists (a 4xx other than 404/405 from its validation) before any user asks."""
        try:
            status, body = self.call("POST", self.dialect.load_path, b"{}", self.timeout_s)
        except OSError as exc:
            status, body = 0, str(exc).encode()
        if status in (404, 405, 0):
            hint = ("start vLLM with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=true"
                    if self.mode == "vllm" else "start SGLang with --enable-lora (and --lora-paths or --max-lora-rank)")
            self.log.warning("engine_adapter_routes_missing", mode=self.mode, path=self.dialect.load_path,
                             status=status, answer=_words(body), hint=hint,
                             consequence=f"SMC_ENGINE_ADAPTERS={self.mode}: POST /adapters will fail")
        else:
            self.log.info("engine_adapter_routes_found", mode=self.mode, path=self.dialect.load_path, status=status)

    # -- the engine -----------------------------------------------------------------------------------
    def _engine_load(self, adapter: Adapter) -> None:
        assert adapter.source is not None
        status, body = self._engine("load", self.dialect.load_path,
                                    {"lora_name": adapter.name, "lora_path": adapter.source.path})
        if status >= 300:
            raise AdapterError(status, f"the engine refused to load adapter {adapter.name!r} from "
                                       f"{adapter.source.path} ({self.dialect.load_path} answered {status}): "
                                       f"{_words(body)}")

    def _engine(self, what: str, path: str, payload: dict[str, str]) -> tuple[int, bytes]:
        try:
            return self.call("POST", path, json.dumps(payload).encode(), self.timeout_s)
        except OSError as exc:
            raise AdapterError(502, f"cannot {what} the adapter: the engine did not answer POST {path}: "
                                    f"{type(exc).__name__}: {exc}") from None

    def _engine_get(self, path: str) -> tuple[int, bytes]:
        try:
            return self.call("GET", path, None, self.timeout_s)
        except OSError as exc:
            return 0, f"{type(exc).__name__}: {exc}".encode()


def _words(body: bytes) -> str:
    return body[:500].decode("utf-8", "replace").strip() or "(empty answer)"


__all__ = ["Adapters", "DIALECTS", "Dialect", "engine_call"]
