"""SIGTERM under keep-alive POST load, with the drain (SMC_DRAIN_SECONDS) and without it (0),
side by side in the same run: requests lost on kept-alive connections per stop.

    python bench/drain.py --smc dist/smc --rounds 3
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.soak import free_port, wait_ready  # noqa: E402
from tests.serve.keepalive_load import KeepAliveLoad  # noqa: E402


def one_stop(smc: str, drain_s: str, clients: int, think_s: float) -> tuple[int, int, int, int]:
    base = Path(tempfile.mkdtemp(prefix="smc-drain-"))
    (base / "model" / "code").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "echo.py", base / "model" / "code" / "inference.py")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SM_", "SAGEMAKER_", "SMC_", "_PYI_"))}
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_DRAIN_SECONDS": drain_s,
                "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    proc = subprocess.Popen([smc, "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, proc)
        with KeepAliveLoad("127.0.0.1", port, clients=clients, think_s=think_s) as load:
            time.sleep(3)
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=40)
            time.sleep(0.3)
        stats = load.stats
        return stats.sent, stats.answered, stats.lost_on_reused, code
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default=str(ROOT / "dist" / "smc"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--think-s", type=float, default=0.3)
    args = parser.parse_args()
    for label, drain_s in (("no drain (SMC_DRAIN_SECONDS=0)", "0"), ("drain (SMC_DRAIN_SECONDS=5)", "5")):
        lost = []
        for _ in range(args.rounds):
            sent, answered, lost_reused, code = one_stop(args.smc, drain_s, args.clients, args.think_s)
            lost.append(lost_reused)
            print(f"{label}: sent {sent}, answered {answered}, lost on kept-alive connections {lost_reused}, "
                  f"exit {code}")
        print(f"{label}: lost per SIGTERM over {args.rounds} rounds: {lost}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
