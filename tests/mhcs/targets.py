"""The servers a sequence runs against, each fresh per sequence:

- `mhcs_handler` / `mhcs_engine`: tests/mhcs/app.py on uvicorn in the MHCS venv, answering
  /invocations in-process or through the stand-in engine;
- `smc_handler`: the frozen `smc serve` with tests/mhcs/handler/inference.py;
- `smc_engine`: the frozen `smc serve` in engine mode in front of the stand-in engine, invocations
  going to its /v1/chat/completions as they go to vLLM's;
- `smc_passthrough`: the frozen `smc serve` in engine mode whose engine is the MHCS app (itself in
  front of the stand-in engine), with SMC_ENGINE_SESSIONS and SMC_ENGINE_ADAPTERS `passthrough`:
  a vLLM build that embeds MHCS, behind smc.

Both sides get the same SAGEMAKER_* session settings (store in a private directory) and the same
stand-in engine, so what differs is the layer between client and engine.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import clean_env, free_port
from tests.engine.conftest import engine_command
from tests.mhcs.sequences import Sequence
from tests.serve.conftest import Server, request

HERE = Path(__file__).resolve().parent
APP = HERE / "app.py"
HANDLER = HERE / "handler" / "inference.py"
READY_TIMEOUT_S = 30
STOP_TIMEOUT_S = 10


def session_env(sequence: Sequence, work: Path) -> dict[str, str]:
    return {"SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true" if sequence.sessions else "false",
            "SAGEMAKER_SESSIONS_EXPIRATION": str(sequence.ttl_s),
            "SAGEMAKER_SESSIONS_PATH": str(work / "sessions")}


def _answers(port: int, path: str) -> bool:
    try:
        return request(port, "GET", path, timeout=2).status == 200
    except OSError:
        return False


def wait_ping(port: int, proc: subprocess.Popen, what: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not _answers(port, "/ping"):
        assert time.monotonic() < deadline and proc.poll() is None, \
            f"{what} not ready (exit {proc.poll()}):\n{log.read_text(errors='replace')[-4000:]}"
        time.sleep(0.05)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def stand_in_engine(work: Path) -> Iterator[str]:
    port = free_port()
    log = work / "engine.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(engine_command(port).split(), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=clean_env())
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not _answers(port, "/health"):
            assert time.monotonic() < deadline and proc.poll() is None, \
                f"the stand-in engine is not ready:\n{log.read_text(errors='replace')[-4000:]}"
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def mhcs_app(mhcs_python: Path, sequence: Sequence, work: Path, engine: bool) -> Iterator[int]:
    with contextlib.ExitStack() as stack:
        port = free_port()
        args = [str(mhcs_python), str(APP), "--port", str(port)]
        if engine:
            args += ["--engine-url", stack.enter_context(stand_in_engine(work))]
        env = {**clean_env(), **session_env(sequence, work)}
        log = work / "mhcs.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env)
        stack.callback(stop, proc)
        wait_ping(port, proc, "the MHCS app", log)
        yield port


def smc_env(mode: str, sequence: Sequence, work: Path, base: Path, stack: contextlib.ExitStack,
            mhcs_python: Path) -> dict[str, str]:
    """smc's environment for `mode`: handler, engine (smc speaks the protocol in front of the
    stand-in engine) or passthrough (the MHCS app is smc's engine and speaks it, as a vLLM build
    embedding MHCS would; smc's SMC_ENGINE_SESSIONS / SMC_ENGINE_ADAPTERS are `passthrough`)."""
    env = session_env(sequence, work)
    if mode == "handler":
        shutil.copy(HANDLER, base / "model" / "code" / "inference.py")
        return env
    engine_port = free_port()
    env["SMC_ENGINE_URL"] = f"http://127.0.0.1:{engine_port}"
    if mode == "engine":
        env.update({"SMC_ENGINE_COMMAND": engine_command(engine_port),
                    "SMC_ENGINE_INVOCATIONS_PATH": "/v1/chat/completions"})
        if sequence.adapters:
            env["SMC_ENGINE_ADAPTERS"] = "vllm"
        return env
    behind = stack.enter_context(stand_in_engine(work))
    env.update({"SMC_ENGINE_COMMAND": f"{mhcs_python} {APP} --port {engine_port} --engine-url {behind}",
                "SMC_ENGINE_HEALTH_PATH": "/ping", "SMC_ENGINE_SESSIONS": "passthrough",
                "SMC_ENGINE_ADAPTERS": "passthrough"})
    return env


@contextlib.contextmanager
def smc_serve(binary: Path, mhcs_python: Path, sequence: Sequence, work: Path, mode: str) -> Iterator[int]:
    base = work / "opt_ml"
    for sub in ("input/config", "model/code", "output"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        server = Server(binary, base, free_port(), smc_env(mode, sequence, work, base, stack, mhcs_python))
        try:
            server.wait_ready(timeout=READY_TIMEOUT_S)
            yield server.port
        finally:
            with contextlib.suppress(Exception):
                server.stop(timeout=STOP_TIMEOUT_S)
            if server.proc.poll() is None:
                server.proc.kill()


def serving(target: str, sequence: Sequence, work: Path, binary: Path | None, mhcs_python: Path):
    """A context manager yielding the port of a fresh `target` (mhcs_handler, mhcs_engine,
    smc_handler, smc_engine, smc_passthrough) for `sequence`."""
    work.mkdir(parents=True, exist_ok=True)
    side, mode = target.split("_")
    if side == "mhcs":
        return mhcs_app(mhcs_python, sequence, work, engine=mode == "engine")
    return smc_serve(binary, mhcs_python, sequence, work, mode)


def adapter_dir(root: Path) -> Path:
    """A PEFT-shaped adapter directory (config with rank > 0 and a weights file)."""
    path = root / "adapter"
    path.mkdir(parents=True, exist_ok=True)
    (path / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj"]}')
    (path / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    return path
