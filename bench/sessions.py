"""Stateful sessions: NEW_SESSION and CLOSE against a plain invocation, same server, same run.

    python bench/sessions.py --smc dist/smc        # ~20 s

Two servers with SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true and the store in a temp dir: handler mode
(2 workers, a handler that bumps a counter in context.session) and engine mode (the stand-in engine,
SMC_ENGINE_SESSIONS=smc). One client on one keep-alive connection sends, in turn, a plain invocation,
a NEW_SESSION, an invocation inside that session and its CLOSE, --samples times; the p50 of each
is reported, and the extra of each session request over the plain one (target <= 2 ms for
NEW_SESSION and CLOSE). Sequential on purpose: it measures the path, not the machine's cores.
With sessions on, engine mode sends plain requests through smc's routing hop too: a third server,
engine mode with sessions off (nginx straight to the engine), gives that hop's cost on plain requests.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "serve"))
import run as serve_bench  # noqa: E402  (free_port, stop)
from ping import wait_ping  # noqa: E402  (bench/ping.py)

TARGET_MS = 2.0
HANDLER = '''
def model_fn(model_dir):
    return None


def predict_fn(data, model, context):
    if context.session is not None:
        context.session["n"] = context.session.get("n", 0) + 1
    return {"ok": True}
'''
ID = "X-Amzn-SageMaker-Session-Id"


def start(smc: Path, base: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = serve_bench.free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON"))}
    full.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
                 "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": "true", "SAGEMAKER_SESSIONS_PATH": str(base / "store")})
    full.update(env)
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(smc), "serve"], env=full, stdout=out, stderr=out, start_new_session=True)
    return proc, port


def measure(port: int, samples: int, plain_only: bool = False) -> dict[str, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(body: str, headers: dict[str, str] | None = None) -> tuple[float, http.client.HTTPResponse, bytes]:
        started = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        data = response.read()
        elapsed_ms = (time.perf_counter() - started) * 1000
        assert response.status == 200, (response.status, data)
        return elapsed_ms, response, data

    times: dict[str, list[float]] = {"plain": [], "new_session": [], "in_session": [], "close": []}
    for i in range(samples + 20):  # the first 20: warm-up
        plain_ms, _, _ = post('{"x": 1}')
        if plain_only:
            if i >= 20:
                times["plain"].append(plain_ms)
            continue
        open_ms, response, _ = post('{"requestType": "NEW_SESSION"}')
        session_id = response.getheader("X-Amzn-SageMaker-New-Session-Id").split(";")[0]
        use_ms, _, _ = post('{"x": 1}', {ID: session_id})
        close_ms, _, _ = post('{"requestType": "CLOSE"}', {ID: session_id})
        if i >= 20:
            for key, value in zip(times, (plain_ms, open_ms, use_ms, close_ms)):
                times[key].append(value)
    conn.close()
    if plain_only:
        return {"plain_p50_ms": round(statistics.median(times["plain"]), 3)}
    p50 = {f"{key}_p50_ms": round(statistics.median(values), 3) for key, values in times.items()}
    plain = statistics.median(times["plain"])
    extra = {f"{key}_extra_ms": round(statistics.median(times[key]) - plain, 3)
             for key in ("new_session", "in_session", "close")}
    return {**p50, **extra}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--samples", type=int, default=300)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smc-bench-sessions-"))
    log = work / "serve.log"
    servers = {}
    try:
        handler = work / "handler"
        (handler / "model" / "code").mkdir(parents=True)
        (handler / "model" / "code" / "inference.py").write_text(HANDLER)
        servers["handler_mode"] = start(args.smc.resolve(), handler, log, {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
        engine = work / "engine"
        (engine / "model").mkdir(parents=True)
        stand_in = ROOT / "tests" / "engine" / "stand_in_engine.py"
        python = shutil.which("python3") or sys.executable
        for name, sessions in (("engine_mode", "true"), ("engine_mode_sessions_off", "false")):
            engine_port = serve_bench.free_port()
            servers[name] = start(args.smc.resolve(), engine, log, {
                "SMC_ENGINE_COMMAND": f"{python} {stand_in} --port {engine_port}",
                "SMC_ENGINE_URL": f"http://127.0.0.1:{engine_port}", "SAGEMAKER_ENABLE_STATEFUL_SESSIONS": sessions})
        for name, (proc, port) in servers.items():
            wait_ping(port, 30)
        results = {name: measure(port, args.samples, plain_only=name.endswith("_off"))
                   for name, (proc, port) in servers.items()}
    finally:
        for proc, _ in servers.values():
            serve_bench.stop(proc, group=True)
        shutil.rmtree(work, ignore_errors=True)
    worst = max(r[f"{k}_extra_ms"] for r in results.values() if "close_extra_ms" in r for k in ("new_session", "close"))
    hop_ms = round(results["engine_mode"]["plain_p50_ms"] - results["engine_mode_sessions_off"]["plain_p50_ms"], 3)
    report = {"results": results, "worst_open_or_close_extra_ms": worst, "engine_plain_hop_cost_ms": hop_ms,
              "targets": {"worst_open_or_close_extra_ms": f"<= {TARGET_MS}"}, "pass": worst <= TARGET_MS}
    print(json.dumps(report, indent=2))
    return 0 if report["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
