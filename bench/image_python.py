"""smc serve with its workers under the image's own Python against the embedded interpreter, the
same binary side by side in one run:

  python bench/image_python.py --smc dist/smc [--python python3] [--duration 8] [--rounds 3]

Tiny-CSV throughput (wrk rounds alternating between the two servers, best round each) and cold
start (exec to /ping 200, median), with the targets of issue 19: image/embedded req/s >= 0.9 and
cold start under the image's Python <= 0.5 s. --python is the stand-in for the image's interpreter
(default: python3 on PATH, which must be CPython 3.9 or newer). A missed target is printed as
MISSES; the bench exits 0 either way (a crash is the only non-zero exit).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"rps_ratio_min": 0.9, "image_cold_start_s_max": 0.5}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


serve = load("bench_serve_run", HERE / "serve" / "run.py")


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default="dist/smc")
    parser.add_argument("--python", default="python3", help="the image's Python (a path or a command)")
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold-runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    smc = Path(args.smc).resolve()
    found = shutil.which(args.python)
    if found is None:
        print(f"image_python: {args.python} not found", file=sys.stderr)
        return 2
    # The interpreter itself, not a launcher in front of it (pyenv's shim is a bash script that costs
    # ~0.2 s per start): an image's python3 is the interpreter.
    python, version = subprocess.run(
        [found, "-c", "import sys; print(sys.executable, '%d.%d.%d' % sys.version_info[:3])"],
        capture_output=True, text=True, check=True).stdout.split()
    root = Path(tempfile.mkdtemp(prefix="smc-bench-imagepy-"))
    try:
        serve.make_model(root)
        lua = root / "post.lua"
        lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(serve.BODY)}\n'
                       'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
        stacks = {"embedded": lambda log: serve.start_smc(smc, root, 2, log, "embedded"),
                  "image": lambda log: serve.start_smc(smc, root, 2, log, python)}
        bench_args = argparse.Namespace(cold_runs=args.cold_runs, ready_timeout=60.0, rounds=args.rounds,
                                        duration=args.duration, connections=8)
        print(f"serve (2 workers, tiny CSV, wrk on loopback); image's Python: {python} ({version})")
        served = serve.measure(stacks, bench_args, lua, root / "servers.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ratio = served["image"]["rps"] / served["embedded"]["rps"]
    cold_image, cold_embedded = served["image"]["cold_start_s"], served["embedded"]["cold_start_s"]
    print(f"\n{'':<26}{'embedded':>10}{'image':>10}{'image/emb':>11}   target")
    print(f"{'req/s':<26}{served['embedded']['rps']:>10.0f}{served['image']['rps']:>10.0f}{ratio:>11.3f}"
          f"   image/embedded >= {TARGETS['rps_ratio_min']}: {verdict(ratio >= TARGETS['rps_ratio_min'])}")
    print(f"{'cold start s (median)':<26}{cold_embedded:>10.3f}{cold_image:>10.3f}{cold_image / cold_embedded:>11.3f}"
          f"   image <= {TARGETS['image_cold_start_s_max']} s: "
          f"{verdict(cold_image <= TARGETS['image_cold_start_s_max'])}")
    print(f"(serve: best of {args.rounds} rounds of {args.duration} s each, alternating; cold start: median of "
          f"{args.cold_runs}, exec to /ping 200)")
    if args.json:
        args.json.write_text(json.dumps({"rps_ratio": ratio, "cold_image_s": cold_image,
                                         "cold_embedded_s": cold_embedded, "python": version}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
