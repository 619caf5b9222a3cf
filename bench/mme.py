"""Multi-model endpoint bench: smc's /models API vs sagemaker-inference 1.10.1 on MMS (multi-model
mode), and vs smc's own single-model /invocations, in one run on the same machine.

  python bench/mme.py --smc dist/smc [--workers 2] [--loads 10] [--duration 5] [--skip-mms]

Load latency: POST /models -> 200, minus the model's own model_fn time (each model's model_fn
sleeps --model-fn-ms, so the overhead is what is left). Invoke throughput: wrk on
POST /models/NAME/invoke vs POST /invocations of the same handler and model (CSV in, CSV out).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ping import wait_ping  # noqa: E402  (bench/ping.py)

from tests.serve import mms_mme  # noqa: E402  (the oracle's MMS harness)

HANDLER = ROOT / "tests" / "fixtures" / "mme" / "inference.py"
BODY = "1.0,2.0,3.0\n4.0,5.0,6.0\n"
TARGETS = {"load_overhead_ms": 50.0, "invoke_vs_single": 0.90}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tree(base: Path, loads: int, model_fn_s: float) -> None:
    (base / "models" / "code").mkdir(parents=True)
    shutil.copy(HANDLER, base / "models" / "code" / "inference.py")
    for i in range(loads):
        model = base / "models" / f"m{i}" / "model"
        model.mkdir(parents=True)
        (model / "model.json").write_text(json.dumps({"weights": [1, 2, 3], "intercept": 1, "sleep_s": model_fn_s}))
    single = base / "model"
    (single / "code").mkdir(parents=True)
    shutil.copy(HANDLER, single / "code" / "inference.py")
    (single / "model.json").write_text(json.dumps({"weights": [1, 2, 3], "intercept": 1}))


def start_smc(smc: Path, base: Path, workers: int, multi: bool, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded",
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "SMC_LOG_FORMAT": "json"})
    if multi:
        env["SAGEMAKER_MULTI_MODEL"] = "true"
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(smc), "serve"], env=env, stdout=out, stderr=out, start_new_session=True)
    return proc, port


def call(port: int, method: str, path: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def load_latencies(port: int, base: Path, loads: int) -> tuple[list[float], list[float]]:
    """Seconds of each POST /models -> 200, then of each DELETE -> 200."""
    loaded, unloaded = [], []
    for i in range(loads):
        url = str(base / "models" / f"m{i}" / "model")
        started = time.perf_counter()
        status = call(port, "POST", "/models", {"model_name": f"m{i}", "url": url})
        loaded.append(time.perf_counter() - started)
        assert status == 200, f"load m{i}: {status}"
    for i in range(1, loads):
        started = time.perf_counter()
        assert call(port, "DELETE", f"/models/m{i}") == 200
        unloaded.append(time.perf_counter() - started)
    return loaded, unloaded


def wrk(port: int, path: str, duration_s: int, connections: int, lua: Path) -> float:
    out = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--timeout", "5s", "-s", str(lua),
                          f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True,
                         timeout=duration_s + 30).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not errors, f"wrk saw errors on {path}:\n{out}"
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def ms(values: list[float]) -> str:
    return f"median {statistics.median(values) * 1000:7.1f} ms (min {min(values) * 1000:.1f}, max {max(values) * 1000:.1f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--loads", type=int, default=10)
    parser.add_argument("--model-fn-ms", type=float, default=100.0)
    parser.add_argument("--duration", type=int, default=4)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="wrk runs per server, alternating servers")
    parser.add_argument("--skip-mms", action="store_true")
    args = parser.parse_args()
    assert shutil.which("wrk"), "wrk is required (apt-get install wrk)"
    model_fn_s = args.model_fn_ms / 1000
    base = Path(tempfile.mkdtemp(prefix="smc-bench-mme-"))
    tree(base, args.loads, model_fn_s)
    lua = base / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                   'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
    log = base / "servers.log"
    print(f"workers={args.workers} loads={args.loads} model_fn={args.model_fn_ms:g} ms duration={args.duration}s")
    servers: dict[str, tuple[subprocess.Popen, int, str]] = {}
    results: dict[str, dict] = {}
    try:
        proc, port = start_smc(args.smc.resolve(), base, args.workers, True, log)
        servers["smc mme"] = (proc, port, "/models/m0/invoke")
        proc, port = start_smc(args.smc.resolve(), base, args.workers, False, log)
        servers["smc single"] = (proc, port, "/invocations")
        if not args.skip_mms:
            port = mms_mme.free_low_port()
            servers["mms mme"] = (mms_mme.start(base, port, args.workers, log), port, "/models/m0/invoke")
        for name, (_, port, _) in servers.items():
            wait_ping(port, 120)
        for name in ("smc mme", "mms mme"):
            if name in servers:
                loaded, unloaded = load_latencies(servers[name][1], base, args.loads)
                overhead = [t - model_fn_s for t in loaded]
                results[name] = {"load_s": loaded, "unload_s": unloaded, "overhead_s": overhead}
                print(f"{name:10} load {ms(loaded)}; minus model_fn {ms(overhead)}; unload {ms(unloaded)}", flush=True)
        rps: dict[str, list[float]] = {name: [] for name in servers}
        for name, (_, port, path) in servers.items():
            wrk(port, path, 1, 2, lua)  # warm-up
        for _ in range(args.rounds):
            for name, (_, port, path) in servers.items():
                rps[name].append(wrk(port, path, args.duration, args.connections, lua))
        for name, values in rps.items():
            print(f"{name:10} invoke {max(values):8.0f} req/s (rounds {[round(v) for v in values]})")
    finally:
        for proc, _, _ in servers.values():
            if isinstance(proc, subprocess.Popen) and proc.args and proc.args[0] == "unshare":
                mms_mme.stop(proc)
            else:
                stop(proc)
    best = {name: max(values) for name, values in rps.items()}
    overhead_ms = statistics.median(results["smc mme"]["overhead_s"]) * 1000
    ratio = best["smc mme"] / best["smc single"]
    print()
    print(f"smc load overhead (POST /models -> 200 minus model_fn): {overhead_ms:.1f} ms "
          f"(target <= {TARGETS['load_overhead_ms']:g} ms)")
    print(f"smc /models/NAME/invoke vs /invocations: x{ratio:.3f} (target >= {TARGETS['invoke_vs_single']})")
    if "mms mme" in best:
        mms_overhead = statistics.median(results["mms mme"]["overhead_s"]) * 1000
        print(f"vs MMS: load overhead {overhead_ms:.1f} vs {mms_overhead:.1f} ms; invoke x{best['smc mme'] / best['mms mme']:.2f} "
              f"({best['smc mme']:.0f} vs {best['mms mme']:.0f} req/s)")
    print(f"logs: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
