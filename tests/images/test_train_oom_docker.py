"""Who killed a training script, through Docker: under `--memory` the kernel's OOM killer, which
the failure file names because the container's memory cgroup counted the kill; without a memory
limit a SIGKILL from elsewhere is not called out of memory (tests/train/test_run.py)."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker
from tests.train.trainkit import make_job, script

pytestmark = pytest.mark.docker

BASE_IMAGE = "smc-base:latest"  # build/base-image.sh (make images); tests/images/test_drain_docker.py builds it too

_HOG = """\
chunks = []
while True:
    chunks.append(bytearray(16 * 1024 * 1024))  # touched pages: 16 MiB more each round
"""


def test_training_script_killed_by_the_oom_killer_is_named_so(docker_engine, smc_binary: Path, tmp_path):
    subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], check=True, capture_output=True, timeout=900)
    base = make_job(tmp_path)
    script(base, "train.py", _HOG)
    for path in [base, *base.rglob("*")]:
        path.chmod(0o777 if path.is_dir() else 0o666)
    name = f"smc-oom-{uuid.uuid4().hex[:8]}"
    done = docker("run", "--rm", "--name", name, "--memory", "160m", "--memory-swap", "160m",
                  "-v", f"{smc_binary}:/usr/local/bin/smc:ro", "-v", f"{base}:/opt/ml",
                  "-e", "SAGEMAKER_PROGRAM=train.py", "-e", "SMC_LOG_FORMAT=json",
                  BASE_IMAGE, "smc", "train", timeout=180)
    assert done.returncode == 137, done.stdout[-2000:] + done.stderr[-2000:]
    text = (base / "output" / "failure").read_text()
    assert text.startswith("Training script train.py failed: killed by SIGKILL from the kernel's OOM killer"), text
    failed = [json.loads(line) for line in done.stdout.splitlines() + done.stderr.splitlines()
              if '"event":"training_failed"' in line]
    assert failed and "OOM killer" in failed[0]["cause"], failed
