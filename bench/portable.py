"""The portable binary (smc's own CPython for glibc 2.17) against the same sources built on the
machine's Python (how dist/smc was built before), side by side in one run:

  python bench/portable.py --smc dist/smc --baseline dist/smc-hostpy [--runs 20] [--duration 8]

Prints each binary's size, `smc version` and a no-op `smc train` (medians of interleaved runs,
wall and CPU time), and tiny-CSV serve throughput (wrk rounds alternating between the two servers,
best round each), with new/baseline ratios and the targets of issue 18. A missed target is printed
as MISSES; the bench exits 0 either way (a crash is the only non-zero exit).
`make bench` builds the baseline with `make dist/smc-hostpy`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGETS = {"size_mb": 30.0, "version_ratio_max": 1.1, "train_ratio_max": 1 / 0.95, "rps_ratio_min": 0.95}


def load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


compare = load("bench_compare", HERE / "compare.py")
serve = load("bench_serve_run", HERE / "serve" / "run.py")


def start_times(binaries: dict[str, str], runs: int, root: Path) -> dict[tuple[str, str], list[tuple[float, float]]]:
    """`smc version` and a no-op `smc train`, the binaries alternating run by run."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    names = list(binaries)
    for run in range(runs):
        for name in names if run % 2 == 0 else reversed(names):
            smc = binaries[name]
            times.setdefault((name, "version"), []).append(compare.timed([smc, "version"], env))
            tree = compare.job_tree(root, f"{run}-{name}")
            job_env = dict(env, SAGEMAKER_BASE_DIR=str(tree), SAGEMAKER_PROGRAM="noop.py", SMC_LOG_FORMAT="json",
                           SMC_PYTHON="embedded", SMC_PREFIX=str(root / f"prefix-{name}"))
            times.setdefault((name, "train"), []).append(compare.timed([smc, "train"], job_env))
    return times


def verdict(ok: bool) -> str:
    return "meets" if ok else "MISSES"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default="dist/smc")
    parser.add_argument("--baseline", default="dist/smc-hostpy")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--duration", type=int, default=8, help="seconds of wrk per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    binaries = {"new": str(Path(args.smc).resolve()), "baseline": str(Path(args.baseline).resolve())}
    for path in binaries.values():
        if not os.access(path, os.X_OK):
            print(f"portable: {path} missing (make binary; make dist/smc-hostpy)", file=sys.stderr)
            return 2
    results: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="smc-bench-portable-"))
    try:
        sizes = {name: os.path.getsize(path) / 1e6 for name, path in binaries.items()}
        times = start_times(binaries, args.runs, root)
        serve.make_model(root)
        lua = root / "post.lua"
        lua.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(serve.BODY)}\n'
                       'wrk.headers["Content-Type"] = "text/csv"\nwrk.headers["Accept"] = "text/csv"\n')
        stacks = {name: (lambda log, smc=path: serve.start_smc(Path(smc), root, 2, log))
                  for name, path in binaries.items()}
        bench_args = argparse.Namespace(cold_runs=3, ready_timeout=60.0, rounds=args.rounds,
                                        duration=args.duration, connections=8)
        print("serve (2 workers, tiny CSV, wrk on loopback):")
        served = serve.measure(stacks, bench_args, lua, root / "servers.log")
    finally:
        shutil.rmtree(root, ignore_errors=True)

    print(f"\n{'':<28}{'baseline':>10}{'new':>10}{'new/base':>10}   target")
    print(f"{'size MB':<28}{sizes['baseline']:>10.1f}{sizes['new']:>10.1f}{sizes['new'] / sizes['baseline']:>10.3f}"
          f"   new <= {TARGETS['size_mb']} MB: {verdict(sizes['new'] <= TARGETS['size_mb'])}")
    results["size_mb"] = sizes["new"]
    for measure, label, target in (("version", "smc version", TARGETS["version_ratio_max"]),
                                   ("train", "smc train no-op", TARGETS["train_ratio_max"])):
        for index, clock in ((0, "wall s"), (1, "CPU s")):
            base = statistics.median(t[index] for t in times[("baseline", measure)])
            new = statistics.median(t[index] for t in times[("new", measure)])
            ratio = new / base
            results[f"{measure}_{clock.split()[0].lower()}_ratio"] = ratio
            note = f"new/base <= {target:.2f}: {verdict(ratio <= target)}" if index == 0 else ""
            print(f"{label + ', ' + clock:<28}{base:>10.3f}{new:>10.3f}{ratio:>10.3f}   {note}")
    rps_ratio = served["new"]["rps"] / served["baseline"]["rps"]
    results["rps_ratio"] = rps_ratio
    print(f"{'serve req/s':<28}{served['baseline']['rps']:>10.0f}{served['new']['rps']:>10.0f}{rps_ratio:>10.3f}"
          f"   new/base >= {TARGETS['rps_ratio_min']}: {verdict(rps_ratio >= TARGETS['rps_ratio_min'])}")
    print(f"({args.runs} interleaved runs for start-up figures; serve: best of {args.rounds} rounds of "
          f"{args.duration} s each, alternating)")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
