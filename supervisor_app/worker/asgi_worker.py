"""A gunicorn worker that runs the user's ASGI app (SMC_ASGI_APP) with uvicorn's server.

gunicorn's arbiter, smc's supervision, readiness and nginx stay as for WSGI; inside the worker,
uvicorn (h11 for HTTP/1.1, wsproto for WebSocket, the asyncio loop: all pure Python, bundled)
serves the unix socket gunicorn opened. Written here rather than uvicorn's deprecated
`uvicorn.workers` so the worker reports ready only once the app's lifespan startup (where FastAPI
apps load their model) has finished, and so uvicorn's log lines reach smc's JSON log.
Imported only when SMC_ASGI_APP is set: uvicorn costs nothing to the WSGI path or to start-up.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gunicorn.arbiter import Arbiter
from gunicorn.workers.base import Worker
from uvicorn.config import Config
from uvicorn.server import Server

from supervisor_app import logs
from supervisor_app.metrics import recorder as metrics
from supervisor_app.worker import early_signals
from supervisor_app.worker.asgi_errors import JsonServerErrors
from supervisor_app.worker.asgi_lifespan import WatchedLifespan
from supervisor_app.worker.asgi_websockets import WebSocketSessions, close_at_drain
from supervisor_app.worker.busy import BusyMark, MarkedAsgiApp, open_mark
from supervisor_app.worker.run_dir import DRAIN_FILE

WEBSOCKET_PATH = "/invocations-bidirectional-stream"


class AsgiWorker(Worker):
    # Set by the gunicorn app's post_worker_init hook: called once uvicorn serves (after lifespan startup).
    on_serving: Callable[[], None] | None = None
    # Set by the same hook: tells the supervisor the app failed to load (its lifespan startup failed).
    on_startup_failed: Callable[[str, str], None] | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
            logger = logging.getLogger(name)
            logger.handlers = []
            logger.propagate = True  # to the root handler: smc's JSON lines with the inference id
        logging.getLogger("uvicorn.error").setLevel(logging.WARNING)  # not "Started server process" per worker
        self.config = Config(
            app=None,
            loop="asyncio",
            http="h11",
            ws="wsproto",
            lifespan="auto",
            log_config=None,
            access_log=False,  # nginx writes the access log, with the inference id
            server_header=False,
            date_header=False,
            proxy_headers=False,
            timeout_keep_alive=5,
            timeout_notify=self.timeout,
            callback_notify=self._heartbeat,
            limit_max_requests=self.max_requests or None,
        )

    def init_process(self) -> None:
        self.busy: BusyMark | None = open_mark(Path(self.cfg.worker_tmp_dir))
        super().init_process()

    def init_signals(self) -> None:
        # uvicorn installs its own SIGTERM/SIGINT handlers (graceful: finish in-flight requests);
        # gunicorn's would only set a flag uvicorn never reads.
        for sig in self.SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.signal(signal.SIGUSR1, self.handle_usr1)
        signal.siginterrupt(signal.SIGUSR1, False)
        early_signals.replay(self)  # a SIGTERM from before now: SIG_DFL ends the worker at once

    def run(self) -> None:
        self.lifespan: WatchedLifespan | None = None
        try:
            asyncio.run(self._serve())
        except SystemExit:
            # uvicorn's startup() calls sys.exit(3) when the lifespan startup failed; asyncio lets
            # a SystemExit out of the loop at once.
            if self.lifespan is not None and self.lifespan.failure is not None:
                self._startup_failed(self.lifespan.failure, self.lifespan.traceback)
            raise

    async def _serve(self) -> None:
        self.config.app = self.wsgi  # gunicorn calls whatever load() returned "wsgi"
        self.config.load()  # uvicorn's own ASGI 2/3 detection and wrappers; serve() keeps the result
        self.config.loaded_app = metrics.instrument_asgi(JsonServerErrors(self.config.loaded_app))
        if self.busy is not None:
            self.config.loaded_app = MarkedAsgiApp(self.config.loaded_app, self.busy)
        websockets = WebSocketSessions(self.config.loaded_app)
        self.lifespan = WatchedLifespan(websockets)
        self.config.loaded_app = self.lifespan
        server = Server(config=self.config)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGQUIT, self.handle_exit, signal.SIGQUIT, None)
        serving = asyncio.create_task(server.serve(sockets=self.sockets))
        while not server.started and not serving.done():
            await asyncio.sleep(0.005)
        if server.started and self.on_serving is not None:
            self.on_serving()
        watcher = asyncio.create_task(close_at_drain(websockets, Path(self.cfg.worker_tmp_dir) / DRAIN_FILE))
        await serving
        watcher.cancel()
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)

    def _startup_failed(self, failure: str, traceback: str | None) -> None:
        """The app's own startup (where it loads its model) failed: the app failed to load, exit
        4 as for an import error, so gunicorn halts instead of respawning it for ever."""
        hint = "fix the app's startup (its lifespan handler or @app.on_event(\"startup\")); the traceback is in the asgi_startup_failed line"
        message = f"the ASGI app's lifespan startup failed: {failure.strip().splitlines()[-1]}"
        fields = {"traceback": traceback} if traceback else {}
        logs.get_logger("asgi").error("asgi_startup_failed", error=failure, hint=hint, **fields)
        if self.on_startup_failed is not None:
            self.on_startup_failed(message, hint)
        sys.exit(Arbiter.APP_LOAD_ERROR)

    async def _heartbeat(self) -> None:
        self.notify()


__all__ = ["WEBSOCKET_PATH", "AsgiWorker"]
