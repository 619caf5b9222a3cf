"""SIGTERM under keep-alive POST load, with the drain (SMC_DRAIN_SECONDS) and without it (0),
side by side in the same run: requests lost on kept-alive connections per stop.

    python bench/drain.py --smc dist/smc --rounds 3
    python bench/drain.py --docker smc-i9-drain:test --rounds 2   # through `docker stop -t 30`

The --docker image is the one tests/images/test_drain_docker.py builds (smc-base, dist/smc and
the echo handler in /opt/ml/model/code). Through Docker, new connections that docker-proxy accepts
after nginx stopped listening are reset: those are counted apart ("reset after the listener closed").
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
import urllib.request
import uuid
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
    env.update({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_BIND_TO_PORT": str(port), "SMC_PYTHON": "embedded", "SMC_DRAIN_SECONDS": drain_s,
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


def one_docker_stop(image: str, drain_s: str, clients: int, think_s: float) -> tuple[int, int, int, int, str]:
    name, port = f"smc-drain-bench-{uuid.uuid4().hex[:8]}", free_port()
    subprocess.run(["docker", "run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                    "-e", f"SMC_DRAIN_SECONDS={drain_s}", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2", image, "serve"],
                   check=True, capture_output=True)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                time.sleep(0.2)
        with KeepAliveLoad("127.0.0.1", port, clients=clients, think_s=think_s) as load:
            time.sleep(3)
            subprocess.run(["docker", "stop", "-t", "30", name], capture_output=True, check=True)
            time.sleep(0.3)
        code = subprocess.run(["docker", "inspect", "-f", "{{.State.ExitCode}}", name], capture_output=True,
                              text=True, check=True).stdout.strip()
        stats = load.stats
        return stats.sent, stats.answered, stats.lost_on_reused, stats.lost - stats.lost_on_reused, code
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", default=str(ROOT / "dist" / "smc"))
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--think-s", type=float, default=0.3)
    parser.add_argument("--docker", metavar="IMAGE", help="stop a container of IMAGE with docker stop instead")
    args = parser.parse_args()
    if args.docker:
        for label, drain_s in (("docker, no drain", "0"), ("docker, drain 5 s", "5")):
            for _ in range(args.rounds):
                sent, answered, lost_reused, lost_fresh, code = one_docker_stop(args.docker, drain_s, args.clients,
                                                                                args.think_s)
                print(f"{label}: sent {sent}, answered {answered}, lost on kept-alive connections {lost_reused}, "
                      f"reset after the listener closed {lost_fresh}, exit {code}")
        return 0
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
