"""`make bench`: every bench in turn, each to its end, whatever an earlier one did.

A bench reports a missed target in its output and exits 0 (timings on a shared machine move; CI
does not gate on them). A non-zero exit is a crash (a missing tool, a server that never became
ready, a bug in the bench): the suite still runs the benches after it, then names the crashed
ones and exits 1, so CI fails on a crash and never hides one.

    python bench/suite.py --smc dist/smc [--baseline dist/smc-hostpy] [--skip-mms]
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def benches(smc: str, skip_mms: bool, baseline: str = "") -> list[list[str]]:
    """The benches of `make bench` with the settings that keep the whole run to a few minutes;
    with a baseline binary (dist/smc-hostpy), bench/portable.py compares the two first."""
    mms = ["--skip-mms"] if skip_mms else []
    portable = [["bench/portable.py", "--smc", smc, "--baseline", baseline]] if baseline else []
    return [*portable,
        ["bench/startup.py", "--smc", smc],
        ["bench/train_overhead.py", "--smc", smc],
        ["bench/serve/run.py", "--smc", smc, *mms],
        ["bench/image_python.py", "--smc", smc, "--rounds", "2", "--duration", "5"],
        ["bench/batching.py", "--smc", smc, "--rounds", "2", "--duration", "4"],
        ["bench/sessions.py", "--smc", smc],
        ["bench/adapters.py", "--smc", smc, "--duration", "3"],
        ["bench/streaming.py", "--smc", smc, "--cold-runs", "5", "--uploads", "9"],
        ["bench/metrics_overhead.py", "--smc", smc, "--duration", "3", "--rounds", "2"],
        ["bench/serve/requirements_start.py", "--smc", smc, "--runs", "3"],
        ["bench/mme.py", "--smc", smc, *mms],
        ["bench/cluster_startup.py", "--smc", smc, "--runs", "1"],
        ["bench/engine.py", "--smc", smc, "--rounds", "1", "--duration", "3", "--lifecycle-runs", "1",
         "--dying-limit-s", "10"],
    ]


def run_all(commands: Sequence[Sequence[str]], python: str = sys.executable) -> list[tuple[str, int]]:
    """Run each command (a script and its arguments) with `python`; (command, exit code) of those
    that crashed."""
    crashed = []
    for command in commands:
        line = shlex.join(command)
        print(f"== bench: {line}", flush=True)
        started = time.monotonic()
        code = subprocess.run([python, *command], cwd=ROOT, check=False).returncode
        print(f"== bench: {line}: exit {code} after {time.monotonic() - started:.0f} s", flush=True)
        if code != 0:
            crashed.append((line, code))
    return crashed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default="dist/smc")
    parser.add_argument("--skip-mms", action="store_true", help="no multi-model-server rows (it needs Java)")
    parser.add_argument("--baseline", default="", help="the binary built the old way (make dist/smc-hostpy)")
    args = parser.parse_args(argv)
    crashed = run_all(benches(args.smc, args.skip_mms, args.baseline))
    for line, code in crashed:
        print(f"bench crashed (exit {code}): {line}", file=sys.stderr)
    if crashed:
        print(f"bench: {len(crashed)} bench(es) crashed; a missed target is reported above and is not a crash",
              file=sys.stderr)
        return 1
    print("bench: every bench ran to its end (missed targets, if any, are reported above)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
