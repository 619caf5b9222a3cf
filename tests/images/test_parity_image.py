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
from tests.stand_ins import NVIDIA_SMI_SERVE_ARGS, write_tool

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
    fake = write_tool(tmp_path / "nvidia-smi", NVIDIA_SMI_SERVE_ARGS, "echo 0\necho 1")  # no GPU on this machine
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


TRAIN_PY = """
import os, smc_parity_pkg
d = "/opt/ml/output/intermediate"
with open(os.path.join(d, "checkpoint.txt"), "w") as f:
    f.write("step 1 " + smc_parity_pkg.VALUE)
print("trained with", smc_parity_pkg.VALUE)
"""


def test_codeartifact_and_intermediate_sync_in_a_training_container(parity_image, containers, tmp_path):
    """The host's fake CodeArtifact and moto S3 are on loopback: the container shares the host's
    network namespace (--network host) to reach them."""
    from moto.server import ThreadedMotoServer
    import boto3
    import requests

    from tests.conftest import free_port
    from tests.fake_codeartifact import FakeCodeArtifact

    build_wheel(tmp_path / "ca-wheels", "smc-parity-pkg", "2.0", "VALUE = 'from codeartifact'\n")
    codeartifact = FakeCodeArtifact(tmp_path / "ca-wheels")
    port = free_port()
    s3_server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3_server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        requests.post(f"{endpoint}/moto-api/reset", timeout=10)
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket="bucket")
        base = tmp_path / "ml"
        for sub in ("input/config", "input/data", "model", "output", "code"):
            (base / sub).mkdir(parents=True)
        (base / "code" / "train.py").write_text(TRAIN_PY)
        (base / "code" / "requirements.txt").write_text("smc-parity-pkg==2.0\n")
        (base / "input/config/hyperparameters.json").write_text(json.dumps(
            {"sagemaker_program": json.dumps("train.py"), "sagemaker_s3_output": json.dumps("s3://bucket/out")}))
        (base / "input/config/resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        (base / "input/config/inputdataconfig.json").write_text("{}")
        env = {**codeartifact.env(), "AWS_ENDPOINT_URL_S3": endpoint, "TRAINING_JOB_NAME": "job-7",
               "AWS_REGION": "us-east-1", "SMC_LOG_FORMAT": "json"}
        env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"] = "AKIAFAKECODEARTIFACT", "fake/secret+key"
        mounts = [a for sub in ("input", "model", "output", "code") for a in ("-v", f"{base / sub}:/opt/ml/{sub}")]
        result, container = containers(parity_image, "train", docker_args=[
            "--network", "host", *mounts, *[a for k, v in env.items() for a in ("-e", f"{k}={v}")]])
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        assert "trained with from codeartifact" in result.stdout
        body = client.get_object(Bucket="bucket", Key="out/job-7/output/intermediate/checkpoint.txt")["Body"].read()
        assert body == b"step 1 from codeartifact"
    finally:
        s3_server.stop()
        codeartifact.close()
