"""A stop signal that reaches a new gunicorn worker before its own handlers is acted on, not lost.

The race itself (a master stopping while it forks its last worker) cannot be timed from a test;
this reproduces its mechanism in a real forked process with smc's real worker classes: until the
worker's init_signals, the inherited handler of gunicorn's master only queues the signal in the
worker's copy of the master's queue; init_signals must then act on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT

_SCRIPT = r"""
import importlib, os, queue, signal, sys
from gunicorn.config import Config
from gunicorn.glogging import Logger
from supervisor_app.worker import early_signals

module, name = sys.argv[1].rsplit(".", 1)
worker_class = getattr(importlib.import_module(module), name)
master_queue = queue.SimpleQueue()
master_queue.put_nowait(signal.SIGCHLD)  # pending for the master at fork: never replayed
signal.signal(signal.SIGTERM, lambda sig, frame: master_queue.put_nowait(sig))  # gunicorn's master handler
forked_r, forked_w = os.pipe()
sent_r, sent_w = os.pipe()
pid = os.fork()
if pid == 0:
    cfg = Config()
    cfg.set("worker_tmp_dir", sys.argv[2])
    worker = worker_class(1, os.getppid(), [], None, 30, cfg, Logger(cfg))
    early_signals.remember_master_queue(type("Arbiter", (), {"SIG_QUEUE": master_queue})(), worker)
    os.write(forked_w, b"x")
    os.read(sent_r, 1)  # the parent's SIGTERM has arrived, to the master's handler
    worker.PIPE = os.pipe()
    os.set_blocking(worker.PIPE[1], False)
    alive_before = worker.alive
    worker.init_signals()
    os._exit(0 if alive_before and not worker.alive else 1)
os.read(forked_r, 1)
os.kill(pid, signal.SIGTERM)
os.write(sent_w, b"x")
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""


@pytest.mark.parametrize(("worker_class", "exit_code"), [
    ("supervisor_app.worker.marked_worker.MarkedWorker", 0),  # handle_exit: alive is False, it stops
    ("supervisor_app.worker.mme.mme_worker.MmeWorker", 0),
    ("supervisor_app.worker.asgi_worker.AsgiWorker", -signal.SIGTERM),  # SIG_DFL until uvicorn serves: it ends
])
def test_a_sigterm_from_before_the_workers_handlers_is_acted_on(worker_class, exit_code, tmp_path):
    result = subprocess.run([sys.executable, "-c", _SCRIPT, worker_class, str(tmp_path)], check=False, cwd=ROOT,
                            capture_output=True, text=True, timeout=30, env={**os.environ, "SMC_LOG_FORMAT": "json"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == str(exit_code), result.stdout + result.stderr
    assert "early_stop_signal_replayed" in result.stdout + result.stderr
