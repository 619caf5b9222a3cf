"""Cold start of `smc serve` with and without a one-package code/requirements.txt.

Same model, same machine, runs alternating: exec to the first 200 on /ping. The package is a
small pure-Python wheel installed offline from a local directory (PIP_NO_INDEX + PIP_FIND_LINKS),
so the number is pip's own cost (starting the embedded pip, resolving, installing), not the
network's; a real index adds its download time on top. Each run gets a fresh SMC_PREFIX, as a
fresh container would.

  python bench/serve/requirements_start.py --smc dist/smc [--runs 5]
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
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.serve.wheels import build_wheel  # noqa: E402

HANDLER = "import json\n\ndef model_fn(model_dir):\n    import benchpkg\n    return benchpkg.VALUE\n\n" \
          "def predict_fn(data, model):\n    return model\n"
MODEL = {"feature_names": ["x1"], "weights": [1.0], "intercept": 0.0}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_start(smc: Path, base: Path, with_requirements: bool, wheels: Path, timeout_s: float) -> float:
    code = base / "model" / "code"
    shutil.rmtree(base, ignore_errors=True)
    code.mkdir(parents=True)
    (code / "inference.py").write_text(HANDLER if with_requirements else HANDLER.replace(
        "    import benchpkg\n    return benchpkg.VALUE", "    return 1"))
    if with_requirements:
        (code / "requirements.txt").write_text("benchpkg==1.0\n")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SAGEMAKER_", "SMC_", "SM_", "PYTHON", "PIP_"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded", "SMC_LOG_FORMAT": "json",
                "SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SMC_PREFIX": str(base / "prefix"),
                "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheels)})
    start = time.perf_counter()
    proc = subprocess.Popen([str(smc), "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while time.perf_counter() - start < timeout_s:
            if proc.poll() is not None:
                raise RuntimeError(f"smc serve exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - start
            except OSError:
                pass
            time.sleep(0.005)
        raise RuntimeError("not ready in time")
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="smc-bench-req-"))
    try:
        wheels = work / "wheels"
        build_wheel(wheels, "benchpkg", "1.0", "VALUE = 1\n")
        results: dict[str, list[float]] = {"without": [], "with": []}
        for _ in range(args.runs):
            for name in results:  # alternate, so a noisy neighbour hurts both alike
                results[name].append(one_start(args.smc.resolve(), work / "base", name == "with", wheels, 120))
        summary = {name: {"median_s": round(statistics.median(v), 3), "min_s": round(min(v), 3),
                          "max_s": round(max(v), 3)} for name, v in results.items()}
        summary["pip_cost_s"] = round(summary["with"]["median_s"] - summary["without"]["median_s"], 3)
        summary["ratio"] = round(summary["with"]["median_s"] / summary["without"]["median_s"], 2)
        print(json.dumps({"bench": "serve_cold_start_requirements", "runs": args.runs, **summary}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
