"""Streaming, large bodies and cold start of `smc serve`, each against a baseline in the same run.

    python bench/streaming.py --smc dist/smc        # ~1 min

- cold start: exec to the first 200 on /ping (median), the demo model, 2 workers.
- time to first byte of a stream vs the handler's first yield: the handler stamps time.time()
  just before its first `yield`, a raw-socket client stamps the first chunk's arrival.
- uploads of 25 MB and 100 MB: smc (SAGEMAKER_MAX_PAYLOAD_IN_MB=0, a handler answering the body
  length) vs the same nginx binary alone answering 200 to the same upload; and 100 MB / 25 MB.
- with --baseline OLD_SMC: cold start and bench/serve's tiny-CSV wrk load (2 workers, -c8),
  this smc vs OLD_SMC, both up at once with wrk rounds alternating between them.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench" / "serve"))
import run as serve_bench  # noqa: E402  (free_port, make_model, stop, start_smc)
from ping import wait_ping  # noqa: E402  (bench/ping.py)

TARGETS = {"cold_start_s": 0.15, "ttfb_over_yield_ms": 5.0, "upload_vs_nginx": 1.5, "upload_100_over_25": 5.0}
MIB = 1024 * 1024

STREAM_HANDLER = '''
import json, time

def model_fn(model_dir):
    return None

def transform_fn(model, data, content_type, accept):
    if content_type != "application/json":
        return json.dumps({"length": len(data)})
    def tokens():
        yield json.dumps({"first_yield": time.time()}) + "\\n"
        for i in range(3):
            yield f"token {i}\\n"
    return tokens(), "application/jsonlines"
'''

NGINX_ONLY = """worker_processes 1; daemon off; pid {run}/nginx.pid; error_log stderr warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_max_body_size 0;
    client_body_buffer_size 1m;
    client_body_temp_path {run}/body;
    server {{ listen 127.0.0.1:{port}; location / {{ return 200 '{{}}'; }} }}
}}
"""


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON"))}
    env.update(extra)
    return env


def start(smc: Path, base: Path, log: Path, env: dict[str, str]) -> tuple[subprocess.Popen, int]:
    port = serve_bench.free_port()
    full = clean_env({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded", **env})
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(smc), "serve"], env=full, stdout=out, stderr=out, start_new_session=True)
    return proc, port


def cold_start(smc: Path, work: Path, runs: int) -> list[float]:
    base = work / "cold"
    if not (base / "model").exists():
        serve_bench.make_model(base)
    times = []
    for _ in range(runs + 1):
        proc, port = start(smc, base, work / "cold.log", {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
        try:
            times.append(wait_ping(port, 30, proc=proc))
        finally:
            serve_bench.stop(proc, group=True)
    return times[1:]  # the first run warms the page cache


def first_chunk(port: int) -> tuple[float, float]:
    """(first chunk arrival, handler's first-yield stamp), both time.time()."""
    body = b"{}"
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%b" % (len(body), body))
        data = b""
        while b'first_yield' not in data or b"\n" not in data.split(b"first_yield", 1)[1]:
            piece = sock.recv(65536)
            if not piece:
                raise RuntimeError(f"closed early: {data!r}")
            data += piece
        arrived = time.time()
        line = data.split(b"\r\n\r\n", 1)[1].split(b"\r\n", 2)[1].split(b"\n")[0]
        return arrived, json.loads(line)["first_yield"]
    finally:
        sock.close()


def upload(port: int, body: bytes) -> float:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        start_s = time.perf_counter()
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/octet-stream"})
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise RuntimeError(f"upload answered {response.status}")
        return time.perf_counter() - start_s
    finally:
        conn.close()


def versus(smc: Path, baseline: Path, work: Path, args: argparse.Namespace) -> dict[str, object]:
    out: dict[str, object] = {}
    colds: dict[str, list[float]] = {"new": [], "baseline": []}
    for _ in range(args.cold_runs):  # alternating, so load spikes hit both alike
        colds["new"] += cold_start(smc, work, 1)
        colds["baseline"] += cold_start(baseline, work, 1)
    for name, times in colds.items():
        out[f"cold_start_{name}_s"] = round(statistics.median(times), 3)
    out["cold_start_new_over_baseline"] = round(out["cold_start_new_s"] / out["cold_start_baseline_s"], 2)
    lua = work / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(serve_bench.BODY)}\n'
                   'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
    running = {}
    try:
        for name, binary in (("new", smc), ("baseline", baseline)):
            base = work / f"rps-{name}"
            serve_bench.make_model(base)
            proc, port = start(binary, base, work / "rps.log", {"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
            running[name] = (proc, port)
            wait_ping(port, 30, proc=proc)
        rps: dict[str, list[float]] = {name: [] for name in running}
        for _ in range(args.rounds):
            for name, (_, port) in running.items():
                rps[name].append(serve_bench.run_wrk(port, 10, 8, lua)["rps"])
        for name, values in rps.items():
            out[f"csv_rps_{name}"] = round(max(values))
            out[f"csv_rps_{name}_rounds"] = [round(v) for v in values]
        out["csv_rps_new_over_baseline"] = round(out["csv_rps_new"] / out["csv_rps_baseline"], 3)
    finally:
        for proc, _ in running.values():
            serve_bench.stop(proc, group=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--streams", type=int, default=30)
    parser.add_argument("--uploads", type=int, default=5, help="uploads per size and server, alternating")
    parser.add_argument("--skip", nargs="*", default=[], choices=["cold", "stream", "upload"])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--baseline", type=Path, help="an older smc binary to compare cold start and throughput with")
    parser.add_argument("--rounds", type=int, default=3, help="wrk rounds per binary with --baseline")
    args = parser.parse_args()
    smc = args.smc.resolve()
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="smc-bench-stream-") as tmp:
        work = Path(tmp)
        log = work / "serve.log"
        if "cold" not in args.skip:
            colds = cold_start(smc, work, args.cold_runs)
            results["cold_start_s"] = round(statistics.median(colds), 3)
            results["cold_start_all_s"] = [round(c, 3) for c in colds]
        if args.baseline:
            results.update(versus(smc, args.baseline.resolve(), work, args))
        base = work / "stream"
        (base / "model" / "code").mkdir(parents=True)
        (base / "model" / "code" / "inference.py").write_text(STREAM_HANDLER)
        proc, port = start(smc, base, log, {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "0", "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
        nginx = None
        try:
            wait_ping(port, 30, proc=proc)
            if "stream" not in args.skip:
                for _ in range(3):
                    first_chunk(port)
                gaps = [arrived - yielded for arrived, yielded in (first_chunk(port) for _ in range(args.streams))]
                results["ttfb_over_yield_ms"] = round(statistics.median(gaps) * 1000, 3)
                results["ttfb_over_yield_p90_ms"] = round(sorted(gaps)[int(len(gaps) * 0.9)] * 1000, 3)
            if "upload" not in args.skip:
                nginx_port = serve_bench.free_port()
                run_dir = work / "nginx-only"
                run_dir.mkdir()
                (run_dir / "nginx.conf").write_text(NGINX_ONLY.format(run=run_dir, port=nginx_port))
                nginx = subprocess.Popen([shutil.which("nginx") or "/usr/sbin/nginx", "-c", str(run_dir / "nginx.conf"),
                                          "-p", str(run_dir)], stdout=subprocess.DEVNULL, stderr=open(log, "ab"))
                time.sleep(0.3)
                for size_mb in (25, 100):
                    body = b"\x01" * (size_mb * MIB)
                    upload(port, body), upload(nginx_port, body)  # warm-up
                    smc_times, nginx_times = [], []
                    for _ in range(args.uploads):
                        smc_times.append(upload(port, body))
                        nginx_times.append(upload(nginx_port, body))
                    results[f"upload_{size_mb}mb_smc_s"] = round(statistics.median(smc_times), 4)
                    results[f"upload_{size_mb}mb_nginx_s"] = round(statistics.median(nginx_times), 4)
                    results[f"upload_{size_mb}mb_vs_nginx"] = round(
                        statistics.median(smc_times) / statistics.median(nginx_times), 2)
                    del body
                results["upload_100_over_25"] = round(results["upload_100mb_smc_s"] / results["upload_25mb_smc_s"], 2)
        finally:
            serve_bench.stop(proc, group=True)
            if nginx is not None:
                serve_bench.stop(nginx)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for key, value in results.items():
        target = TARGETS.get(key) or TARGETS.get(key.replace("_25mb", "").replace("_100mb", "").replace("upload__", "upload_"))
        print(f"{key:28} {value}" + (f"   (target <= {target})" if target and not isinstance(value, list) else ""))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
