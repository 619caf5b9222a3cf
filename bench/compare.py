"""Two smc binaries side by side, interleaved run by run so both share the machine's load:
`smc version` and `smc train` on a no-op job, medians and the ratio new/base, in wall time and
in CPU time (user + sys of smc and its children: steadier than wall time on a busy machine).

    python bench/compare.py --base OLD/dist/smc --new dist/smc [--runs 30]

For a refactor that must not make start-up or the training overhead slower: build the base from
the commit before (git worktree add ... && make binary there) and compare it with this tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path


def job_tree(root: Path, name: str) -> Path:
    base = root / name
    (base / "input/config").mkdir(parents=True)
    (base / "code").mkdir()
    (base / "code/noop.py").write_text("pass\n")
    config = base / "input/config"
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    (config / "hyperparameters.json").write_text(json.dumps({"epochs": "3", "lr": "0.1"}))
    (config / "inputdataconfig.json").write_text("{}")
    return base


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s) of one run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall_s, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True)
    parser.add_argument("--new", required=True)
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "TMPDIR")}
    root = Path(tempfile.mkdtemp(prefix="smc-compare-"))
    times: dict[tuple[str, str], list[tuple[float, float]]] = {}
    try:
        for run in range(args.runs):
            order = (args.base, args.new) if run % 2 == 0 else (args.new, args.base)
            for which, smc in zip(("base", "new") if run % 2 == 0 else ("new", "base"), order, strict=True):
                times.setdefault((which, "version"), []).append(timed([smc, "version"], env))
                tree = job_tree(root, f"{run}-{which}")
                job_env = dict(env, SAGEMAKER_BASE_DIR=str(tree), SAGEMAKER_PROGRAM="noop.py", SMC_LOG_FORMAT="json")
                times.setdefault((which, "train"), []).append(timed([smc, "train"], job_env))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    print(f"{'median of':<30}{'base s':>10}{'new s':>10}{'new/base':>10}   ({args.runs} runs each, interleaved)")
    for measure, label in (("version", "smc version"), ("train", "smc train no-op")):
        for index, clock in ((0, "wall"), (1, "CPU")):
            base = statistics.median(t[index] for t in times[("base", measure)])
            new = statistics.median(t[index] for t in times[("new", measure)])
            print(f"{label + ', ' + clock:<30}{base:>10.3f}{new:>10.3f}{new / base:>10.3f}")


if __name__ == "__main__":
    main()
