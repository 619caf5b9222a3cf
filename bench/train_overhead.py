"""What `smc train` adds to a training job's start: a no-op script run three ways, side by side.

    python bench/train_overhead.py --smc dist/smc [--runs 10]

1. `python noop.py` directly (the floor);
2. `smc train` on an /opt/ml tree whose entry point is noop.py (image python; also embedded);
3. sagemaker-training 5.1.4's `train` on the same tree, from the venv the differential test
   caches in ~/.cache/smc (created here if missing).
Prints the median wall time of each and the overhead over plain python. Target: smc <= 0.2 s over
plain python, and below the toolkit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOOLKIT_VERSION = "5.1.4"
TOOLKIT_VENV = Path.home() / ".cache" / "smc" / f"sagemaker-training-{TOOLKIT_VERSION}"


def real_python() -> str:
    """The interpreter behind `python3` on PATH (not a pyenv shim, which adds its own start-up)."""
    found = shutil.which("python3") or sys.executable
    return subprocess.run(
        [found, "-c", "import sys; print(sys.executable)"], capture_output=True, text=True, check=True
    ).stdout.strip()


def toolkit_train() -> Path:
    train = TOOLKIT_VENV / "bin" / "train"
    if not (TOOLKIT_VENV / ".ok").exists():
        subprocess.run([real_python(), "-m", "venv", str(TOOLKIT_VENV)], check=True)
        subprocess.run(
            [str(TOOLKIT_VENV / "bin/pip"), "install", "-q", f"sagemaker-training=={TOOLKIT_VERSION}"],
            check=True,
        )
        (TOOLKIT_VENV / ".ok").touch()
    return train


def make_tree(root: Path) -> Path:
    base = root / "opt_ml"
    for sub in ("input/config", "input/data", "code", "model", "output/data"):
        (base / sub).mkdir(parents=True)
    (base / "code/noop.py").write_text("pass\n")
    (base / "input/config/hyperparameters.json").write_text(json.dumps({"sagemaker_program": '"noop.py"'}))
    (base / "input/config/resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    (base / "input/config/inputdataconfig.json").write_text("{}")
    return base


def clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SM_", "SAGEMAKER_", "SMC_", "PYTHON", "_PYI_"))
    }


def timed_run(argv: list[str], env: dict[str, str], cwd: Path, base: Path) -> float:
    for name in ("success", "failure"):
        (base / "output" / name).unlink(missing_ok=True)
    started = time.perf_counter()
    done = subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv} failed ({done.returncode}): {done.stderr.decode()[-2000:]}")
    return elapsed


def medians(
    launchers: list[tuple[str, list[str], dict[str, str], Path]], runs: int, base: Path
) -> list[tuple[str, float]]:
    """Round-robin: each round runs every launcher once, so load from other processes on a busy
    machine falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name, *_ in launchers}
    for _ in range(runs):
        for name, argv, env, cwd in launchers:
            times[name].append(timed_run(argv, env, cwd, base))
    return [(name, statistics.median(times[name])) for name, *_ in launchers]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default="dist/smc")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    smc = str(Path(args.smc).resolve())
    python = real_python()
    toolkit = toolkit_train()
    with tempfile.TemporaryDirectory(prefix="smc-bench-") as tmp:
        base = make_tree(Path(tmp))
        common = dict(clean_env(), SAGEMAKER_BASE_DIR=str(base), SM_STUDIO_LOCAL_MODE="true")
        rows = medians(
            [
                ("python noop.py", [python, "noop.py"], clean_env(), base / "code"),
                ("smc --version (binary start only)", [smc, "--version"], clean_env(), base),
                ("smc train (image python)", [smc, "train"], dict(common, SMC_PYTHON=python), base),
                (
                    "smc train (embedded python)",
                    [smc, "train"],
                    dict(common, SMC_PYTHON="embedded", SMC_PREFIX=str(Path(tmp) / "prefix")),
                    base,
                ),
                (f"sagemaker-training {TOOLKIT_VERSION} train", [str(toolkit)], common, base),
            ],
            args.runs,
            base,
        )
    floor = rows[0][1]
    toolkit_overhead = rows[-1][1] - floor
    print(f"median of {args.runs} runs each; python = {python}")
    print(f"{'launcher':<34} {'median s':>9} {'over python s':>14} {'vs toolkit overhead':>20}")
    for name, seconds in rows:
        overhead = seconds - floor
        ratio = f"{overhead / toolkit_overhead:.2f}x" if toolkit_overhead > 0 and "train" in name else ""
        print(f"{name:<34} {seconds:>9.3f} {overhead:>14.3f} {ratio:>20}")
    smc_overhead = rows[2][1] - floor
    own = rows[2][1] - rows[1][1] - floor
    print(f"smc train's own work (train - --version - python): {own:.3f} s; the rest is the binary's start")
    verdict = "meets" if smc_overhead <= 0.2 and smc_overhead < toolkit_overhead else "MISSES"
    print(f"target (<= 0.200 s over python and below the toolkit's {toolkit_overhead:.3f} s): {verdict}")


if __name__ == "__main__":
    main()
