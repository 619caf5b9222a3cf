"""Cluster start-up: from "every container has started" to the user program's first line on every
rank, for an MPI job on Docker containers algo-1..N. smc vs sagemaker-training 5.1.4's MPI path, in
the same image (examples/mpi plus python3 and the toolkit), side by side.

    python bench/cluster_startup.py --smc dist/smc [--hosts 2] [--runs 3]

The program (examples/mpi allreduce) prints `first_line rank=R t=<wall clock>` before MPI_Init, so
the number is the launcher's doing, not Open MPI's wire-up. Start = the latest State.StartedAt of
the containers. A second column times the whole job, to the last container's exit (the toolkit
sleeps 30 s on the master and on each worker after mpirun). Runs alternate between the launchers
so machine load falls on both alike. Every
container and network is made with a unique name and removed by name; the image is cached by key.
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "train" / "distributed"))

import dockercluster

TOOLKIT_VENV = Path.home() / ".cache" / "smc" / "sagemaker-training-5.1.4"
WHEEL_CACHE = Path.home() / ".cache" / "smc" / "wheels-toolkit-5.1.4"
TOOLKIT_DOCKERFILE = """\
FROM {base}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \\
    && rm -rf /var/lib/apt/lists/*
COPY wheels /wheels
RUN python3 -m pip install -q --break-system-packages --no-index --find-links /wheels sagemaker-training \\
    && rm -rf /wheels
# The SSH set-up sagemaker-training's own error message asks images to make.
RUN mkdir -p /root/.ssh && ssh-keygen -q -t rsa -N '' -f /root/.ssh/id_rsa \\
    && cp /root/.ssh/id_rsa.pub /root/.ssh/authorized_keys \\
    && printf 'Host *\\n  StrictHostKeyChecking no\\n' >> /root/.ssh/config && mkdir -p /var/run/sshd
"""
_FIRST = re.compile(r"first_line rank=(\d+) host=\S+ t=([\d.]+)")


def toolkit_wheels() -> Path:
    """Wheels of the toolkit venv's packages for the image (python 3.11, as Debian bookworm's)."""
    if (WHEEL_CACHE / ".ok").exists():
        return WHEEL_CACHE
    WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
    freeze = subprocess.run(
        [str(TOOLKIT_VENV / "bin" / "pip"), "freeze"], capture_output=True, text=True, check=True
    )
    pins = [line for line in freeze.stdout.splitlines() if line and not line.startswith("sagemaker")]
    # The venv's own pip on this bookworm host: binary wheels where PyPI has them, and wheels built
    # here for the sdists (sagemaker-training's C extension, inotify_simple); same python 3.11 and
    # glibc as the image.
    subprocess.run(
        [str(TOOLKIT_VENV / "bin" / "pip"), "wheel", "-q", "--disable-pip-version-check", "--no-deps",
         "-w", str(WHEEL_CACHE), *pins, "sagemaker-training==5.1.4"],
        check=True, timeout=1800,
    )  # fmt: skip
    (WHEEL_CACHE / ".ok").touch()
    return WHEEL_CACHE


def bench_image(smc: Path) -> str:
    base = dockercluster.build_image(smc)
    wheels = toolkit_wheels()
    key = base.split(":")[1]
    tag = f"smc-mpi-bench:{key}"
    if dockercluster.docker("image", "inspect", tag).returncode != 0:
        with tempfile.TemporaryDirectory(prefix="smc-bench-", dir="/var/tmp") as context:
            Path(context, "Dockerfile").write_text(TOOLKIT_DOCKERFILE.format(base=base))
            shutil.copytree(wheels, Path(context, "wheels"), ignore=shutil.ignore_patterns(".ok"))
            done = dockercluster.docker("build", "-q", "-t", tag, context, timeout=1800)
            if done.returncode != 0:
                raise SystemExit(f"toolkit image build failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    for line in dockercluster.docker(
        "images", "smc-mpi-bench", "--format", "{{.Repository}}:{{.Tag}}"
    ).stdout.split():
        if line != tag:
            dockercluster.docker("rmi", line)
    return tag


def _state_time(container: str, field: str) -> float:
    raw = dockercluster.docker(
        "inspect", "-f", f"{{{{.State.{field}}}}}", container, check=True
    ).stdout.strip()
    stamp, _, frac = raw.rstrip("Z").partition(".")
    base = dt.datetime.fromisoformat(stamp).replace(tzinfo=dt.UTC).timestamp()
    return base + float(f"0.{frac or '0'}")


def one_run(image: str, launcher: str, hosts: int, timeout_s: float) -> tuple[float, float]:
    """Seconds from the last container start to the last rank's first line, and to the last
    container's exit (the job is the allreduce: well under a second of work)."""
    with (
        tempfile.TemporaryDirectory(prefix="smc-bench-", dir="/var/tmp") as root,
        dockercluster.Cluster(image, Path(root), size=hosts) as cluster,
    ):
        cluster.entrypoint = "smc" if launcher == "smc" else "train"
        cluster.start({"sagemaker_mpi_enabled": True})
        deadline = time.monotonic() + timeout_s
        while True:
            firsts = {int(r): float(t) for r, t in _FIRST.findall(cluster.logs("algo-1"))}
            if len(firsts) == hosts:
                break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{launcher}: no first line on every rank after {timeout_s:g} s:\n"
                    + cluster.logs("algo-1")[-3000:]
                )
            time.sleep(0.1)
        started = max(_state_time(h.container, "StartedAt") for h in cluster.hosts)
        codes = cluster.wait(timeout_s)
        if any(codes.values()):
            raise SystemExit(f"{launcher}: the job failed {codes}:\n" + cluster.logs("algo-1")[-3000:])
        finished = max(_state_time(h.container, "FinishedAt") for h in cluster.hosts)
        return max(firsts.values()) - started, finished - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smc", type=Path, default=ROOT / "dist" / "smc")
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=240)
    args = parser.parse_args()
    problem = dockercluster.require_docker()
    if problem:
        raise SystemExit(problem)
    image = bench_image(args.smc.resolve())
    times: dict[str, list[tuple[float, float]]] = {"smc": [], "sagemaker-training": []}
    for _ in range(args.runs):
        for launcher, values in times.items():
            values.append(one_run(image, launcher, args.hosts, args.timeout_s))
    print(f"MPI allreduce job, {args.hosts} hosts x 1 rank, {args.runs} runs each, image {image}")
    print("seconds from the last container start to: the first line on every rank | every container's exit")
    print(
        f"{'launcher':<20} {'first line median':>17} {'min':>6} {'max':>6} | {'all exited median':>17} {'min':>6} {'max':>6}"
    )
    for launcher, values in times.items():
        first = [v[0] for v in values]
        done = [v[1] for v in values]
        print(
            f"{launcher:<20} {statistics.median(first):17.2f} {min(first):6.2f} {max(first):6.2f} | "
            f"{statistics.median(done):17.2f} {min(done):6.2f} {max(done):6.2f}"
        )


if __name__ == "__main__":
    main()
