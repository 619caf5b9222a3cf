"""Serving bench: the demo model behind smc, the seed stack and sagemaker-inference on MMS.

One run, same machine, same worker count, wrk on loopback (bounded duration):
requests/s, p50/p99 latency and their ratios; cold start (exec to the first 200 on /ping);
memory of the whole process tree (RSS sum and PSS sum, PSS counting shared pages once).

  python bench/serve/run.py --smc dist/smc [--workers 2] [--duration 10] [--skip-mms]

The seed stack (nginx -> gunicorn sync -> Flask, configured as the scikit bring-your-own
example) and the toolkit get throwaway venvs under ~/.cache/smc (bench-seed, bench-mms-1.1.11).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
from ping import wait_ping  # noqa: E402  (bench/ping.py)

CACHE = Path.home() / ".cache" / "smc"
SEED_VENV = CACHE / "bench-seed"
# The toolkit oracle's versions, as tests/serve/toolkit_oracle.py pins them; the venv is named by
# them, so a cache from an unpinned install is not reused.
MMS_PACKAGES = ["multi-model-server==1.1.11", "sagemaker-inference==1.10.1"]
MMS_VENV = CACHE / "bench-mms-1.1.11"
EXAMPLE = ROOT / "examples" / "tabular" / "code" / "inference.py"
MODEL = {"feature_names": ["x1", "x2", "x3"], "weights": [0.5, -1.25, 2.0], "intercept": 0.1}
BODY = "1.0,2.0,3.0\n4.0,5.0,6.0\n"
TARGETS = {"vs_seed_rps": 1.5, "vs_toolkit_rps": 2.5, "cold_start_s": 0.3}


def free_port(below: int = 65536) -> int:
    """A free loopback port; `below` for servers that cannot take high ports."""
    for attempt in range(500):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 0 if below > 65535 else 20000 + (os.getpid() + attempt * 7) % 12000))
            except OSError:
                continue
            port = s.getsockname()[1]
        if port < below:
            return port
    raise RuntimeError("no free port")


def make_model(base: Path) -> Path:
    model = base / "model"
    (model / "code").mkdir(parents=True)
    (model / "model.json").write_text(json.dumps(MODEL))
    shutil.copy(EXAMPLE, model / "code" / "inference.py")
    return model


def ensure_venv(venv: Path, packages: list[str]) -> Path:
    python = venv / "bin" / "python"
    marker = venv / ".ok"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *packages], check=True)
        marker.write_text(" ".join(packages))
    return python


def tree(pid: int) -> list[int]:
    """The server's descendants plus every process of its session: smc starts children in
    sessions of their own, MMS's java daemonizes away from its parent but stays in the session."""
    stats = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), int(fields[3]))  # ppid, session
    found = {p for p, (_, sid) in stats.items() if sid == pid} | {pid}
    grew = True
    while grew:
        more = {p for p, (ppid, _) in stats.items() if ppid in found} - found
        grew = bool(more)
        found |= more
    return sorted(found)


def memory_mb(pid: int) -> tuple[float, float]:
    rss = pss = 0
    for p in tree(pid):
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1])
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1])
        except OSError:
            pass
    return rss / 1024, pss / 1024


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, group: bool = False) -> None:
    if proc.poll() is None:
        if group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait()


def parse_duration_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(port: int, duration_s: int, connections: int, lua: Path) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration_s}s", "--latency", "--timeout", "5s",
         "-s", str(lua), f"http://127.0.0.1:{port}/invocations"],
        capture_output=True, text=True, check=True, timeout=duration_s + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50 = parse_duration_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1))
    p99 = parse_duration_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "non_2xx": int(errors.group(1)) if errors else 0}


# -- the three stacks: each start() returns (Popen, port); processes run in their own group ---------
def start_smc(smc: Path, base: Path, workers: int, log: Path, python: str = "embedded") -> tuple[subprocess.Popen, int]:
    """python: SMC_PYTHON (the embedded interpreter unless a bench compares the image's)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port),
                "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), "SMC_PYTHON": python})
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(smc), "serve"], env=env, stdout=out, stderr=out, start_new_session=True)
    return proc, port


def start_seed(base: Path, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    """The bring-your-own `serve` script's job: nginx + `gunicorn -k sync` on a unix socket."""
    python = ensure_venv(SEED_VENV, ["gunicorn==27.0.1", "flask==3.1.3"])
    port = free_port()
    run = Path(tempfile.mkdtemp(prefix="seed-", dir=base))
    run.chmod(0o755)  # the example uses /tmp; nginx workers (nobody) must reach the socket
    base.chmod(0o755)
    conf = (HERE / "seed" / "nginx.conf.in").read_text().replace("@RUN@", str(run)).replace("@PORT@", str(port))
    (run / "nginx.conf").write_text(conf)
    script = (
        f"nginx=$(command -v nginx || echo /usr/sbin/nginx); $nginx -c {run}/nginx.conf -p {run} & "
        f"exec {python.parent}/gunicorn --timeout 60 -k sync -b unix:{run}/gunicorn.sock -w {workers} "
        f"--chdir {HERE / 'seed'} wsgi:app"
    )
    env = {**os.environ, "BENCH_MODEL_DIR": str(base / "model")}
    with open(log, "ab") as out:
        proc = subprocess.Popen(["bash", "-c", script], env=env, stdout=out, stderr=out, start_new_session=True)
    return proc, port


MMS_ENTRY = """
import sys
from sagemaker_inference import model_server
model_server.start_model_server(handler_service="bench_handler_service")
"""

MMS_HANDLER = """
from sagemaker_inference.default_handler_service import DefaultHandlerService
from sagemaker_inference.default_inference_handler import DefaultInferenceHandler
from sagemaker_inference.transformer import Transformer


class HandlerService(DefaultHandlerService):
    def __init__(self):
        super().__init__(transformer=Transformer(default_inference_handler=DefaultInferenceHandler()))


_service = HandlerService()
_initialized = []


def handle(data, context):
    if not _initialized:
        _service.initialize(context)
        _initialized.append(True)
    if data is None:
        return None
    return _service.handle(data, context)
"""


def start_mms(base: Path, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    """sagemaker-inference 1.10.1's own start-up: it writes /etc/sagemaker-mms.properties and runs MMS."""
    python = ensure_venv(MMS_VENV, MMS_PACKAGES)
    port = free_port(below=32768)  # MMS 1.1.11 answers "Invalid port number" for ports above 32767
    helper = base / "mms-entry"
    helper.mkdir(exist_ok=True)
    (helper / "entry.py").write_text(MMS_ENTRY)
    (helper / "bench_handler_service.py").write_text(MMS_HANDLER)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_"))}
    env.update({"SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers),
                "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": f"{helper}:{base / 'model' / 'code'}",
                "PATH": f"{python.parent}:{env.get('PATH', '')}",
                # MMS keeps its pid file in TMPDIR and refuses to start while one names a live pid:
                # a private dir, so no other MMS on the machine (or a stale file) stops the bench.
                "TMPDIR": str(helper)})
    with open(log, "ab") as out:
        proc = subprocess.Popen([str(python), str(helper / "entry.py")], env=env, stdout=out, stderr=out,
                                start_new_session=True, cwd=str(base))
    return proc, port


# -- measuring --------------------------------------------------------------------------------------
def cold_starts(start, log: Path, runs: int, timeout_s: float) -> list[float]:
    colds = []
    for _ in range(runs):
        proc, port = start(log=log)
        try:
            colds.append(wait_ping(port, timeout_s, proc=proc))
        finally:
            stop(proc, group=True)
    return colds


def measure(stacks: dict, args: argparse.Namespace, lua: Path, log: Path) -> dict[str, dict]:
    """Cold starts per stack, then all servers up at once and wrk rounds alternating between them
    (a noisy neighbour then hurts every stack alike); each stack's best round is reported."""
    colds = {name: cold_starts(start, log, args.cold_runs if name != "toolkit" else 1, args.ready_timeout)
             for name, start in stacks.items()}
    running = {}
    try:
        for name, start in stacks.items():
            proc, port = start(log=log)
            running[name] = (proc, port)
            wait_ping(port, args.ready_timeout, proc=proc)
            subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", str(lua), f"http://127.0.0.1:{port}/invocations"],
                           capture_output=True, check=True)  # warm-up
        rounds: dict[str, list[dict]] = {name: [] for name in stacks}
        for _ in range(args.rounds):
            for name, (_, port) in running.items():
                rounds[name].append(run_wrk(port, args.duration, args.connections, lua))
        results = {}
        for name, (proc, _) in running.items():
            rss, pss = memory_mb(proc.pid)
            best = max(rounds[name], key=lambda r: r["rps"])
            best.update({"rounds_rps": [round(r["rps"]) for r in rounds[name]],
                         "cold_start_s": statistics.median(colds[name]),
                         "cold_starts_s": [round(c, 3) for c in colds[name]],
                         "rss_mb": round(rss, 1), "pss_mb": round(pss, 1)})
            results[name] = best
            print(f"{name:8} {best['rps']:9.0f} req/s (rounds {best['rounds_rps']})  p50 {best['p50_ms']:6.2f} ms  "
                  f"p99 {best['p99_ms']:6.2f} ms  cold {best['cold_start_s']:.3f} s  RSS {rss:6.1f} MB  "
                  f"PSS {pss:6.1f} MB  non-2xx {best['non_2xx']}", flush=True)
        return results
    finally:
        for proc, _ in running.values():
            stop(proc, group=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=int, default=10, help="seconds of wrk per stack")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2, help="wrk runs per stack, alternating stacks")
    parser.add_argument("--ready-timeout", type=float, default=120)
    parser.add_argument("--skip-mms", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    assert shutil.which("wrk"), "wrk is required (apt-get install wrk)"
    base = Path(tempfile.mkdtemp(prefix="smc-bench-serve-"))
    make_model(base)
    lua = base / "post.lua"
    lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(BODY)}\n'
                   'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
    log = base / "servers.log"
    print(f"workers={args.workers} connections={args.connections} duration={args.duration}s body={BODY!r}")
    stacks = {
        "smc": lambda log: start_smc(args.smc.resolve(), base, args.workers, log),
        "seed": lambda log: start_seed(base, args.workers, log),
    }
    if not args.skip_mms:
        stacks["toolkit"] = lambda log: start_mms(base, args.workers, log)
    results = measure(stacks, args, lua, log)
    smc = results["smc"]
    print()
    for other in ("seed", "toolkit"):
        if other in results:
            ratio = smc["rps"] / results[other]["rps"]
            target = TARGETS[f"vs_{other}_rps"]
            print(f"smc/{other}: throughput x{ratio:.2f} (target >= {target}), p99 {smc['p99_ms']:.2f} vs "
                  f"{results[other]['p99_ms']:.2f} ms, cold start {smc['cold_start_s']:.3f} vs "
                  f"{results[other]['cold_start_s']:.3f} s")
    print(f"smc cold start {smc['cold_start_s']:.3f} s (target <= {TARGETS['cold_start_s']} s)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    print(f"logs: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
