"""Size and start-up of dist/smc, side by side with plain Python in the same run.

Prints: binary size; median wall time of `smc version` (the onefile bootloader unpacks itself
on every start); median time for a child that re-runs the same binary from a running smc (it
reuses the parent's unpacked folder); and the same commands under the source tree's Python.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = {"size_mb": 30.0, "version_s": 0.25, "child_s": 0.08}

CHILD_PROBE = """
import statistics, subprocess, sys, time
times = []
for _ in range({runs}):
    t = time.perf_counter()
    subprocess.run([sys.executable, "version"], stdout=subprocess.DEVNULL, check=True)
    times.append(time.perf_counter() - t)
print(statistics.median(times))
"""


def median_wall_s(argv: list[str], runs: int, env: dict[str, str]) -> float:
    subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)  # warm the page cache
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smc", default=str(ROOT / "dist" / "smc"))
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    smc = str(Path(args.smc).resolve())
    env = {k: v for k, v in os.environ.items() if not k.startswith("_PYI_")}
    source_env = dict(env, PYTHONPATH=str(ROOT))

    size_mb = os.path.getsize(smc) / 1e6
    version_s = median_wall_s([smc, "version"], args.runs, env)
    child = subprocess.run(
        [smc, "python", "-c", CHILD_PROBE.format(runs=args.runs)], env=env, capture_output=True, text=True, check=True
    )
    child_s = float(child.stdout.strip())
    python_s = median_wall_s([sys.executable, "-c", "pass"], args.runs, env)
    source_s = median_wall_s([sys.executable, "-m", "supervisor_app", "version"], args.runs, source_env)

    rows = [
        ("binary size (MB)", size_mb, TARGETS["size_mb"], None),
        ("smc version, median s", version_s, TARGETS["version_s"], source_s),
        ("re-exec child, median s", child_s, TARGETS["child_s"], source_s),
        ("baseline: python -c pass, s", python_s, None, None),
        ("baseline: python -m supervisor_app version, s", source_s, None, None),
    ]
    print(f"{'measure':<48}{'value':>10}{'target':>10}{'vs source':>12}")
    ok = True
    for name, value, target, baseline in rows:
        verdict = ""
        if target is not None:
            verdict = "ok" if value <= target else "OVER"
            ok &= value <= target
        ratio = f"{value / baseline:.1f}x" if baseline else ""
        target_text = f"{target:g}" if target is not None else ""
        print(f"{name:<48}{value:>10.3f}{target_text:>10}{ratio:>12}  {verdict}")
    print("all targets met" if ok else "some targets missed (timings vary with machine load)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
