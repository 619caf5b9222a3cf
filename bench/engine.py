"""Engine-mode bench: smc serve fronting a stand-in engine, against the engine alone and against
model-hosting-container-standards' `standard-supervisor` (supervisord) around the same engine.

One run, same machine, measured side by side:
  - throughput and p50/p99 of small POST /invocations (wrk, bounded), smc vs direct vs standard-supervisor,
    for a no-op engine and for one that waits 2 ms per request
  - start: exec to the first /ping 200 with an engine that needs --warmup-s to become healthy
    (median of --lifecycle-runs; smc's own part read from its engine_healthy log line)
  - kill -9 of the engine -> /ping 200 again; idle SIGTERM -> exit; an engine that exits 7 at once
  - time to the first streamed byte (SSE, chunked) through smc vs direct
  - auto routing (SMC_ENGINE_INVOCATIONS_PATH=auto) vs a fixed path vs the engine's chat route hit
    directly, same chat body, side by side (`--only routing` runs just this part)

  python bench/engine.py --smc dist/smc [--duration 5] [--rounds 2] [--json out.json]

standard-supervisor comes from a throwaway venv (~/.cache/smc/bench-mhcs) with
model-hosting-container-standards==0.1.16 from PyPI; it is run as its docs say: the launch
command after `standard-supervisor`, the engine itself on the SageMaker port.
"""

from __future__ import annotations

import argparse
import http.client
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
import threading
import time
from pathlib import Path

from ping import wait_ping  # bench/ping.py (the script's folder is on sys.path)

ROOT = Path(__file__).resolve().parent.parent
STAND_IN = ROOT / "tests" / "engine" / "stand_in_engine.py"
MHCS_VENV = Path.home() / ".cache" / "smc" / "bench-mhcs"
MHCS = "model-hosting-container-standards==0.1.16"
PYTHON = shutil.which("python3") or sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_mhcs() -> Path:
    if not (MHCS_VENV / ".ok").exists():
        subprocess.run([PYTHON, "-m", "venv", str(MHCS_VENV)], check=True)
        subprocess.run([str(MHCS_VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", MHCS],
                       check=True, timeout=900)
        (MHCS_VENV / ".ok").touch()
    return MHCS_VENV / "bin"


def engine_argv(port: int, *flags: str) -> list[str]:
    return [PYTHON, str(STAND_IN), "--port", str(port), *flags]


class Stack:
    """One way of running the engine: direct, smc, or standard-supervisor."""

    def __init__(self, kind: str, smc: Path, work: Path, *flags: str, env_extra: dict[str, str] | None = None) -> None:
        self.kind = kind
        self.port = free_port()
        self.engine_port = self.port if kind != "smc" else free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SMC_", "SAGEMAKER_", "_PYI_"))}
        command = engine_argv(self.engine_port, *flags)
        if kind == "direct":
            argv = command
        elif kind == "smc":
            (work / "model").mkdir(exist_ok=True)
            env.update({"SAGEMAKER_BASE_DIR": str(work), "SAGEMAKER_BIND_TO_PORT": str(self.port),
                        "SMC_LOG_FORMAT": "json", "SMC_ENGINE_URL": f"http://127.0.0.1:{self.engine_port}",
                        "SMC_ENGINE_COMMAND": " ".join(command), **(env_extra or {})})
            argv = [str(smc), "serve"]
        else:
            bin_dir = ensure_mhcs()
            env["PATH"] = f"{bin_dir}:{env['PATH']}"
            env["SUPERVISOR_CONFIG_PATH"] = str(work / f"supervisord-{self.port}.conf")
            argv = [str(bin_dir / "standard-supervisor"), *command]
        self.log = open(work / f"{kind}-{self.port}.log", "wb")
        self.started = time.perf_counter()
        # A pipe, as a container's output is: supervisord writing "/dev/stdout" into a regular
        # file would overwrite it from offset 0 and lose lines.
        self.proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.copier = threading.Thread(target=self._copy, daemon=True)
        self.copier.start()

    def _copy(self) -> None:
        for chunk in iter(lambda: self.proc.stdout.read1(65536), b""):  # type: ignore[union-attr]
            self.log.write(chunk)
            self.log.flush()

    def engine_pid(self) -> int:
        """The engine's python process itself (not standard-supervisor, whose argv holds the same words)."""
        wanted = [str(STAND_IN), "--port", str(self.engine_port)]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
            except OSError:
                continue
            if argv[1:4] == wanted and "python" in Path(argv[0]).name:
                return int(entry.name)
        raise RuntimeError(f"no engine process on port {self.engine_port}")

    def stop(self, timeout_s: float = 30) -> tuple[int | None, float]:
        started = time.perf_counter()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            code = None
        elapsed = time.perf_counter() - started
        self.kill()
        return code, elapsed

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        # supervisord runs its programs in their own process groups, and a SIGKILLed supervisord
        # leaves them running (smc's engine gets its death signal): end the engine by its pid.
        try:
            os.kill(self.engine_pid(), signal.SIGKILL)
        except (RuntimeError, ProcessLookupError):
            pass
        self.copier.join(timeout=2)
        self.log.close()


def parse_ms(text: str) -> float:
    value, unit = re.match(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(port: int, duration_s: int, lua: Path, path: str = "/invocations") -> dict[str, float]:
    out = subprocess.run(["wrk", "-t2", "-c8", f"-d{duration_s}s", "--latency", "--timeout", "5s", "-s", str(lua),
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True, timeout=duration_s + 30).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p50_ms": parse_ms(re.search(r"^\s+50%\s+(\S+)", out, re.M).group(1)),
            "p99_ms": parse_ms(re.search(r"^\s+99%\s+(\S+)", out, re.M).group(1)),
            "non_2xx": int(errors.group(1)) if errors else 0}


def ttfb_ms(port: int, samples: int = 15) -> float:
    """Median time from sending POST /stream to the first `data:` line."""
    times = []
    for _ in range(samples):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        started = time.perf_counter()
        conn.request("POST", "/stream", body="{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        while not resp.fp.readline().startswith(b"data:"):
            pass
        times.append((time.perf_counter() - started) * 1000)
        conn.close()
    return statistics.median(times)


def throughput(smc: Path, work: Path, duration: int, rounds: int, *flags: str) -> dict[str, dict[str, float]]:
    lua = work / "post.lua"
    lua.write_text('wrk.method = "POST"\nwrk.body = \'{"inputs":[1,2,3]}\'\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    results: dict[str, list[dict[str, float]]] = {"direct": [], "smc": [], "standard_supervisor": []}
    for _ in range(rounds):
        for name in results:
            stack = Stack("mhcs" if name == "standard_supervisor" else name, smc, work, *flags)
            try:
                assert wait_ping(stack.port, 30, since=stack.started, required=False), f"{name} never ready"
                subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", str(lua), f"http://127.0.0.1:{stack.port}/invocations"],
                               capture_output=True, check=True)  # warm-up
                results[name].append(wrk(stack.port, duration, lua))
            finally:
                stack.kill()
    return {name: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]}
            for name, runs in results.items()}


def routing(smc: Path, work: Path, duration: int, rounds: int, *flags: str) -> dict[str, object]:
    """One chat body three ways: the engine's /v1/chat/completions directly; smc with a fixed
    SMC_ENGINE_INVOCATIONS_PATH (nginx -> engine); smc with auto (nginx -> routing hop -> engine)."""
    lua = work / "chat.lua"
    lua.write_text('wrk.method = "POST"\nwrk.body = \'{"model":"m","messages":[{"role":"user","content":"hi"}]}\'\n'
                   'wrk.headers["Content-Type"] = "application/json"\n')
    ways = {"direct": ("direct", {}, "/v1/chat/completions"),
            "smc_fixed_path": ("smc", {"SMC_ENGINE_INVOCATIONS_PATH": "/v1/chat/completions"}, "/invocations"),
            "smc_auto": ("smc", {"SMC_ENGINE_INVOCATIONS_PATH": "auto"}, "/invocations")}
    results: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    for _ in range(rounds):
        for name, (kind, env, path) in ways.items():
            stack = Stack(kind, smc, work, *flags, env_extra=env)
            try:
                assert wait_ping(stack.port, 30, since=stack.started, required=False), f"{name} never ready"
                subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", str(lua), f"http://127.0.0.1:{stack.port}{path}"],
                               capture_output=True, check=True)  # warm-up
                results[name].append(wrk(stack.port, duration, lua, path))
            finally:
                stack.kill()
    t = {name: {key: round(statistics.median(r[key] for r in runs), 2) for key in runs[0]} for name, runs in results.items()}
    return {**t, "auto_vs_fixed_rps": round(t["smc_auto"]["rps"] / t["smc_fixed_path"]["rps"], 3),
            "auto_vs_direct_rps": round(t["smc_auto"]["rps"] / t["direct"]["rps"], 3),
            "fixed_vs_direct_rps": round(t["smc_fixed_path"]["rps"] / t["direct"]["rps"], 3),
            "auto_p50_over_fixed_ms": round(t["smc_auto"]["p50_ms"] - t["smc_fixed_path"]["p50_ms"], 2)}


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def large_body(smc: Path, work: Path, size_mb: int = 50, samples: int = 3) -> dict[str, object]:
    """A `size_mb` MB prompt through smc in auto mode: by the body (through the routing hop) and with
    route= in the custom attribute (no hop); median seconds, and the smc process's peak RSS growth."""
    stack = Stack("smc", smc, work, env_extra={"SMC_ENGINE_INVOCATIONS_PATH": "auto",
                                               "SAGEMAKER_MAX_PAYLOAD_IN_MB": str(size_mb + 14)})
    body = json.dumps({"prompt": "x" * (size_mb * 1024 * 1024), "max_tokens": 1}).encode()
    try:
        assert wait_ping(stack.port, 30, since=stack.started, required=False), "smc never ready"
        children = Path(f"/proc/{stack.proc.pid}/task/{stack.proc.pid}/children").read_text().split()
        smc_pid = int(children[0]) if children else stack.proc.pid  # the onefile bootloader's Python
        before = _rss_kib(smc_pid, "VmHWM")
        times: dict[str, list[float]] = {"by_body": [], "by_attribute": []}
        for _ in range(samples):
            for way, headers in (("by_body", {}), ("by_attribute", {"X-Amzn-SageMaker-Custom-Attributes":
                                                                    "route=/v1/completions"})):
                conn = http.client.HTTPConnection("127.0.0.1", stack.port, timeout=60)
                started = time.perf_counter()
                conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json", **headers})
                resp = conn.getresponse()
                resp.read()
                times[way].append(time.perf_counter() - started)
                conn.close()
                assert resp.status == 200, (way, resp.status)
        return {"body_mb": round(len(body) / 2**20, 1),
                **{f"{way}_s": round(statistics.median(t), 3) for way, t in times.items()},
                "smc_peak_rss_growth_mb": round((_rss_kib(smc_pid, "VmHWM") - before) / 1024, 1),
                "smc_rss_after_mb": round(_rss_kib(smc_pid, "VmRSS") / 1024, 1)}
    finally:
        stack.kill()


def lifecycle(kind: str, smc: Path, work: Path, warmup_s: float) -> dict[str, float | int | None]:
    stack = Stack(kind, smc, work, "--warmup-s", str(warmup_s))
    result: dict[str, float | int | None] = {}
    try:
        ready = wait_ping(stack.port, 60, since=stack.started, required=False)
        result["ready_s"] = round(ready, 3) if ready else None
        if kind == "smc" and ready:
            # smc's own part: exec of smc until the engine is spawned, plus the poll that saw it healthy
            time.sleep(0.1)
            for line in (work / f"smc-{stack.port}.log").read_text(errors="replace").splitlines():
                if '"engine_healthy"' in line:
                    result["engine_spawn_to_healthy_s"] = json.loads(line)["elapsed_s"]
                    result["smc_own_start_s"] = round(ready - result["engine_spawn_to_healthy_s"], 3)
                    break
        os.kill(stack.engine_pid(), signal.SIGKILL)
        killed = time.perf_counter()
        time.sleep(0.02)
        recovered = wait_ping(stack.port, 60, since=killed, required=False)
        result["kill9_to_healthy_s"] = round(recovered, 3) if recovered else None
        time.sleep(0.5)
        code, elapsed = stack.stop()
        result["sigterm_exit_code"] = code
        result["sigterm_to_exit_s"] = round(elapsed, 3)
    finally:
        stack.kill()
    return result


def dying_engine(kind: str, smc: Path, work: Path, limit_s: float) -> dict[str, object]:
    stack = Stack(kind, smc, work, "--exit-code", "7")
    try:
        code = stack.proc.wait(timeout=limit_s)
        elapsed = round(time.perf_counter() - stack.started, 3)
    except subprocess.TimeoutExpired:
        code, elapsed = None, None
    stack.kill()
    log = (work / f"{kind}-{stack.port}.log").read_text(errors="replace")
    return {"exit_code": code, "exit_after_s": elapsed, "still_running_after_s": None if code is not None else limit_s,
            "engine_stderr_in_output": "refuses to start (exit 7)" in log}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--warmup-s", type=float, default=1.0)
    parser.add_argument("--dying-limit-s", type=float, default=15.0)
    parser.add_argument("--lifecycle-runs", type=int, default=3, help="median of this many start/kill/stop runs")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--only", choices=("routing",), help="run only this part")
    args = parser.parse_args()
    smc = args.smc.resolve()
    with tempfile.TemporaryDirectory(prefix="smc-bench-engine-") as tmp:
        work = Path(tmp)
        report: dict[str, object] = {}
        report["routing"] = {"noop_engine": routing(smc, work, args.duration, args.rounds),
                             "engine_2ms": routing(smc, work, args.duration, args.rounds, "--work-ms", "2"),
                             "large_body": large_body(smc, work)}
        if args.only == "routing":
            print(json.dumps(report, indent=2))
            if args.json:
                args.json.write_text(json.dumps(report, indent=2) + "\n")
            return 0
        # Two engines: one that answers at once (all CPU: on a small machine nginx's hop competes with
        # the engine and wrk for the same cores) and one that waits 2 ms per request, as an engine
        # waiting on its accelerator does (the proxy's cost is then what a real endpoint sees).
        for label, flags in (("noop_engine", ()), ("engine_2ms", ("--work-ms", "2"))):
            t = throughput(smc, work, args.duration, args.rounds, *flags)
            report[label] = {**t, "smc_vs_direct_rps": round(t["smc"]["rps"] / t["direct"]["rps"], 3),
                             "smc_vs_standard_supervisor_rps": round(t["smc"]["rps"] / t["standard_supervisor"]["rps"], 3),
                             "smc_p99_over_direct_ms": round(t["smc"]["p99_ms"] - t["direct"]["p99_ms"], 2)}
        alone = []
        for _ in range(args.lifecycle_runs):
            direct = Stack("direct", smc, work, "--warmup-s", str(args.warmup_s))
            try:
                alone.append(wait_ping(direct.port, 30, since=direct.started, required=False) or 0.0)
            finally:
                direct.kill()
        direct_ready = statistics.median(alone)
        report["engine_alone_ready_s"] = round(direct_ready, 3)
        report["lifecycle"] = {}
        for name, kind in (("smc", "smc"), ("standard_supervisor", "mhcs")):
            runs = [lifecycle(kind, smc, work, args.warmup_s) for _ in range(args.lifecycle_runs)]
            report["lifecycle"][name] = {  # type: ignore[index]
                key: (statistics.median(r[key] for r in runs) if all(isinstance(r.get(key), (int, float)) for r in runs)
                      else [r.get(key) for r in runs]) for key in runs[0]}
        for name, run in report["lifecycle"].items():  # type: ignore[union-attr]
            if run.get("ready_s") and direct_ready:
                run["ready_over_engine_alone_s"] = round(run["ready_s"] - direct_ready, 3)
            if run.get("kill9_to_healthy_s") and direct_ready:
                run["recovery_over_engine_alone_s"] = round(run["kill9_to_healthy_s"] - direct_ready, 3)
        report["dying_engine"] = {"smc": dying_engine("smc", smc, work, args.dying_limit_s),
                                  "standard_supervisor": dying_engine("mhcs", smc, work, args.dying_limit_s)}
        streams = {}
        for kind in ("direct", "smc"):
            stack = Stack(kind, smc, work, "--chunks", "3", "--chunk-delay-s", "0.05")
            try:
                wait_ping(stack.port, 30, since=stack.started, required=False)
                streams[kind] = round(ttfb_ms(stack.port), 2)
            finally:
                stack.kill()
        report["ttfb_ms"] = streams
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
