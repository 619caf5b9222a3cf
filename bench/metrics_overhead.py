"""What metrics cost on the request path, measured two ways in one run:

1. end to end: the demo model behind `smc serve` with metrics off and with both forms on
   (SMC_METRICS=emf, SMC_METRICS_PORT, /metrics scraped every second during the run), wrk on
   loopback, rounds alternating between the two servers; ratio on vs off;
2. in process: the per-request cost of recorder.instrument() around a trivial WSGI app, in
   microseconds (the part that runs in the worker), median of several runs.

  python bench/metrics_overhead.py --smc dist/smc [--duration 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import timeit
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench" / "serve"))

from ping import wait_ping  # noqa: E402  (bench/ping.py)
from run import BODY, free_port, make_model, run_wrk, stop  # noqa: E402


def start(smc: Path, base: Path, extra: dict[str, str], log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded",
                "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **extra})
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(smc), "serve"], env=env, stdout=out, stderr=out, start_new_session=True)
    wait_ping(port, 30, proc=proc)
    return proc, port


def scrape_every_second(port: int, done: threading.Event) -> None:
    while not done.wait(1.0):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            resp.read()


def in_process_us(repeat: int = 7, number: int = 200_000) -> dict[str, float]:
    from supervisor_app.metrics import recorder

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/csv")])
        return [b"ok"]

    environ = {"PATH_INFO": "/invocations", "REQUEST_METHOD": "POST"}

    def start_response(status, headers, exc_info=None):
        return None

    plain = min(timeit.repeat(lambda: app(environ, start_response), repeat=repeat, number=number)) / number
    with tempfile.TemporaryDirectory() as tmp:
        recorder.configure(Path(tmp))
        metered = recorder.instrument(app)
        timed = min(timeit.repeat(lambda: metered(environ, start_response), repeat=repeat, number=number)) / number
        recorder.configure(None)
    return {"app_us": plain * 1e6, "instrumented_us": timed * 1e6, "overhead_us": (timed - plain) * 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    micro = in_process_us()
    with tempfile.TemporaryDirectory(prefix="smc-bench-metrics-") as tmp:
        base = Path(tmp)
        make_model(base)
        lua = base / "post.lua"
        lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                       'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
        metrics_port = free_port()
        servers = {
            "off": start(args.smc, base, {}, base / "off.log"),
            "on": start(args.smc, base, {"SMC_METRICS": "emf", "SMC_METRICS_INTERVAL_SECONDS": "1",
                                          "SMC_METRICS_PORT": str(metrics_port)}, base / "on.log"),
        }
        done = threading.Event()
        scraper = threading.Thread(target=scrape_every_second, args=(metrics_port, done), daemon=True)
        scraper.start()
        rounds: dict[str, list[dict[str, float]]] = {name: [] for name in servers}
        try:
            for name, (_, port) in servers.items():  # warm-up
                run_wrk(port, 1, 2, lua)
            for _ in range(args.rounds):
                for name, (_, port) in servers.items():
                    rounds[name].append(run_wrk(port, args.duration, args.connections, lua))
        finally:
            done.set()
            for proc, _ in servers.values():
                stop(proc)
    result = {name: {key: round(statistics.median(r[key] for r in runs), 3) for key in ("rps", "p50_ms", "p99_ms")}
              for name, runs in rounds.items()}
    result["on_vs_off_rps"] = round(result["on"]["rps"] / result["off"]["rps"], 3)
    result["rps_each_round"] = {name: [round(r["rps"]) for r in runs] for name, runs in rounds.items()}
    result["in_process"] = {k: round(v, 3) for k, v in micro.items()}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
