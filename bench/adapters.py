"""LoRA adapter bench (SMC_ENGINE_ADAPTERS=vllm): invocations naming an adapter through smc
(nginx -> smc's adapter hop, which sets the body's `model` -> engine) against the same request
sent to the engine directly with `model` already set, in one run on one machine; and requests
without the header, smc with adapters on vs SMC_ENGINE_ADAPTERS=passthrough (both nginx -> engine).

The stand-in engine waits --work-ms per request (default 20 ms, as an engine waits on its
accelerator; a LoRA generation takes far longer), so the ratios say what smc's hop costs a
serving engine, not the stand-in's own Python speed. ~40 s:

  python bench/adapters.py --smc dist/smc [--duration 5] [--work-ms 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from engine import Stack, wrk  # bench/engine.py (the script's folder is on sys.path)
from ping import wait_ping

HEADER = "X-Amzn-SageMaker-Adapter-Identifier"


def _lua(path: Path, body: str, header: str | None = None) -> Path:
    lines = ['wrk.method = "POST"', f"wrk.body = '{body}'", 'wrk.headers["Content-Type"] = "application/json"']
    if header:
        lines.append(f'wrk.headers["{HEADER}"] = "{header}"')
    path.write_text("\n".join(lines) + "\n")
    return path


def _load_adapter(port: int, work: Path) -> None:
    adapter = work / "a1"
    adapter.mkdir(exist_ok=True)
    (adapter / "adapter_config.json").write_text('{"r": 8}')
    request = urllib.request.Request(f"http://127.0.0.1:{port}/adapters",
                                     data=json.dumps({"name": "a1", "src": str(adapter)}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def _measure(port: int, duration: int, lua: Path) -> dict[str, float]:
    subprocess.run(["wrk", "-t1", "-c2", "-d1s", "-s", str(lua), f"http://127.0.0.1:{port}/invocations"],
                   capture_output=True, check=True)  # warm-up
    result = wrk(port, duration, lua)
    assert result["non_2xx"] == 0, result
    return result


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smc", type=Path, default=Path(__file__).resolve().parent.parent / "dist" / "smc")
    parser.add_argument("--duration", type=int, default=5)
    parser.add_argument("--work-ms", type=float, default=20.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    flags = ("--work-ms", str(args.work_ms))
    results: dict[str, object] = {"work_ms": args.work_ms, "duration_s": args.duration}
    with tempfile.TemporaryDirectory(prefix="smc-bench-adapters-") as tmp:
        work = Path(tmp)
        plain = _lua(work / "plain.lua", '{"inputs":[1,2,3]}')
        named = _lua(work / "named.lua", '{"inputs":[1,2,3]}', "a1")
        preset = _lua(work / "preset.lua", '{"inputs":[1,2,3],"model":"a1"}')
        stack = Stack("smc", args.smc, work, *flags, env_extra={"SMC_ENGINE_ADAPTERS": "vllm"})
        try:
            assert wait_ping(stack.port, 30, since=stack.started, required=False), "smc never ready"
            _load_adapter(stack.port, work)
            results["engine_direct"] = _measure(stack.engine_port, args.duration, preset)
            results["smc_adapter"] = _measure(stack.port, args.duration, named)
            results["smc_no_header"] = _measure(stack.port, args.duration, plain)
        finally:
            stack.kill()
        time.sleep(0.5)
        stack = Stack("smc", args.smc, work, *flags)
        try:
            assert wait_ping(stack.port, 30, since=stack.started, required=False), "smc never ready"
            results["passthrough_no_header"] = _measure(stack.port, args.duration, plain)
        finally:
            stack.kill()
    rps = {name: value["rps"] for name, value in results.items() if isinstance(value, dict)}
    results["adapter_vs_direct_rps"] = round(rps["smc_adapter"] / rps["engine_direct"], 3)
    results["no_header_vs_passthrough_rps"] = round(rps["smc_no_header"] / rps["passthrough_no_header"], 3)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
