"""Features a user migrating from sagemaker-inference relies on: the pre_model_fn/model_warmup_fn
hooks, code/requirements.txt at start, GPU-aware workers (the frozen binary, real nginx)."""

from __future__ import annotations

import shutil

from tests.serve.conftest import HANDLERS  # noqa: F401  (fixtures come from conftest)
from tests.conftest import ROOT

PARITY = ROOT / "tests" / "fixtures" / "parity"


def install_parity_handler(base, name: str) -> None:
    code = base / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(PARITY / f"{name}.py", code / "inference.py")


def test_hooks_run_around_model_fn_in_every_worker(start_server, opt_ml):
    install_parity_handler(opt_ml, "hooks")
    server = start_server(None, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    answer = server.invoke([1]).json()
    assert answer == {"calls": [["pre_model_fn", True], ["model_fn"], ["model_warmup_fn", ["warm"]]],
                      "model": {"warm": True}}


def test_failing_warmup_fails_start_up_like_model_fn(start_server, opt_ml):
    install_parity_handler(opt_ml, "hooks")
    server = start_server(None, env={"HOOKS_FAIL_WARMUP": "1"}, wait=False)
    assert server.wait_exit(timeout=30) == 4
    failed = server.wait_event("model_load_failed")
    assert "model_warmup_fn raised RuntimeError: warm-up request failed" in failed["error"]
    assert server.ping() is None
