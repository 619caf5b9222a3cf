"""The serve-side migration features in a real image (smc-base + the binary, no Python): hooks,
code/requirements.txt installed at start into a private dir on a read-only root, a worker per GPU
(a stand-in nvidia-smi is mounted over PATH: no GPU here), all through `docker run IMAGE serve`."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker
from tests.serve.wheels import build_wheel

IMAGE = "smc-i13-parity:test"  # this test's own tag: the example tags are shared with other tests
DOCKERFILE = 'FROM smc-base:latest\nCOPY smc /usr/local/bin/\nENTRYPOINT ["smc"]\n'


@pytest.fixture(scope="module")
def parity_image(docker_engine, smc_binary, tmp_path_factory):
    subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], check=True, capture_output=True, timeout=900)
    context = tmp_path_factory.mktemp("parity-image")
    (context / "Dockerfile").write_text(DOCKERFILE)
    shutil.copy(smc_binary, context / "smc")
    built = docker("build", "-q", "-t", IMAGE, str(context), timeout=300)
    assert built.returncode == 0, built.stderr
    return IMAGE


def test_requirements_hooks_and_gpus_in_a_read_only_image(parity_image, containers, tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    shutil.copy(ROOT / "tests" / "fixtures" / "parity" / "image_all.py", model / "code" / "inference.py")
    (model / "code" / "requirements.txt").write_text("smc-parity-pkg==1.0\n")
    build_wheel(tmp_path / "wheels", "smc-parity-pkg", "1.0", "VALUE = 'installed at start'\n")
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\n# stand-in for the real tool (no GPU on this machine)\necho 0\necho 1\n")
    fake.chmod(0o755)
    for path in [tmp_path, *tmp_path.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o755)
    result, container = containers(
        parity_image, "serve", detach=True, publish=True,
        docker_args=["--read-only", "--tmpfs", "/tmp:exec", "-v", f"{model}:/opt/ml/model:ro",
                     "-v", f"{tmp_path / 'wheels'}:/wheels:ro", "-v", f"{fake}:/usr/local/bin/nvidia-smi:ro",
                     "-e", "PIP_NO_INDEX=1", "-e", "PIP_FIND_LINKS=/wheels", "-e", "SMC_LOG_FORMAT=json"])
    assert result.returncode == 0, result.stderr
    container.wait_ready(timeout_s=120)
    request = urllib.request.Request(container.url("/invocations"), data=b"[1]",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        answer = json.loads(resp.read())
    assert answer["package"] == "installed at start"
    assert answer["calls"] == ["pre_model_fn", "model_fn", "model_warmup_fn"]
    assert answer["cuda_visible_devices"] in ("0", "1") and answer["gpu_id"] == 0
    events = [json.loads(line) for line in container.logs().splitlines() if line.startswith("{")]
    started = next(e for e in events if e.get("event") == "requirements_install_started")
    assert started["private_target"] is True, started  # /opt/smc is on the read-only root
    detected = next(e for e in events if e.get("event") == "gpus_detected")
    assert detected["count"] == 2 and detected["workers"] == 2, detected
