"""The SageMaker Python SDK's local mode as a real client of an smc image, offline.

sdk_client.py runs in its own cached venv (sagemaker 2.x pinned in sdk-requirements.txt) and does
fit, a failing fit, deploy + predict (CSV and JSON) + delete, and batch transform with both
strategies; each test checks one step of that one run. Compose: the SDK uses `docker compose` only
when `docker compose version` prints "v2", else a `docker-compose` on PATH (see compose_path_dir).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.conftest import clean_env, free_port
from tests.images.conftest import TRAIN_CSV, docker

pytestmark = pytest.mark.docker

HERE = Path(__file__).parent
REQUIREMENTS = HERE / "sdk-requirements.txt"
CACHE_DIR = Path(os.environ.get("CACHE_DIR", Path.home() / ".cache" / "smc"))
CLIENT_TIMEOUT_S = 600
STEPS = ["fit", "fit_failure", "deploy", "transform_MultiRecord", "transform_SingleRecord", "transform_json_lines"]
ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
BATCH_ROWS = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [-2.0, 1.5, 4.0]]


def tabular_truth(row: list[float]) -> float:
    return 2 * row[0] - 3 * row[1] + 0.5 * row[2] + 1


def sdk_python() -> Path:
    """The SDK venv under ~/.cache/smc, keyed on the pinned requirements; made when missing."""
    key = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:12]
    venv = CACHE_DIR / f"sdk-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".ok").is_file():
        subprocess.run([shutil.which("python3") or sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        "-r", str(REQUIREMENTS)], check=True, timeout=900)
        (venv / ".ok").touch()
    return python


def compose_path_dir(shim_dir: Path) -> str:
    """PATH for the SDK: how it finds Compose on this machine, with a shim when needed.

    sagemaker 2.185+ runs `docker compose` only if `docker compose version` prints a literal "v2";
    otherwise it looks for `docker-compose` on PATH. Compose v1 (Debian's docker-compose package)
    is used as is; a plugin whose version lacks "v2" (v5.x, distro builds like 2.20.2+ds1) gets a
    `docker-compose` shim that execs `docker compose`.
    """
    path = os.environ.get("PATH", "")
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if plugin.returncode == 0 and "v2" in plugin.stdout:
        return path
    if shutil.which("docker-compose"):
        return path
    if plugin.returncode == 0:
        shim_dir.mkdir(parents=True, exist_ok=True)
        shim = shim_dir / "docker-compose"
        shim.write_text('#!/bin/sh\nexec docker compose "$@"\n')
        shim.chmod(0o755)
        return f"{shim_dir}{os.pathsep}{path}"
    pytest.fail("the SDK's local mode needs Docker Compose: apt-get install -y docker-compose "
                "(or the docker compose plugin)")


def write_inputs(work: Path) -> tuple[Path, Path, Path]:
    train_dir, batch_dir, json_dir = work / "train", work / "batch", work / "batch-json"
    for directory in (train_dir, batch_dir, json_dir):
        directory.mkdir()
    shutil.copy(TRAIN_CSV["tabular"], train_dir / "train.csv")
    half = len(BATCH_ROWS) // 2
    for name, rows in (("part-a", BATCH_ROWS[:half]), ("part-b", BATCH_ROWS[half:])):
        (batch_dir / f"{name}.csv").write_text("".join(",".join(str(x) for x in row) + "\n" for row in rows))
        (json_dir / f"{name}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return train_dir, batch_dir, json_dir


def containers_of(image: str) -> list[str]:
    out = docker("ps", "-aq", "--filter", f"ancestor={image}")
    return out.stdout.split()


@pytest.fixture(scope="module")
def local_mode(images, tmp_path_factory) -> dict:
    """Run every SDK step once against a uniquely tagged copy of the tabular image; clean up after."""
    python = sdk_python()
    # Data lives under /tmp (the SDK refuses /root, /etc, /var/lib as mount sources).
    work = tmp_path_factory.mktemp("sdk")
    train_dir, batch_dir, json_dir = write_inputs(work)
    image = f"smc-sdk-e2e:{uuid.uuid4().hex[:8]}"  # a tag of our own: its containers are ours
    docker("tag", images["tabular"], image, check=True)
    plan = {"image": image, "workdir": str(work), "train_dir": str(train_dir), "batch_dir": str(batch_dir),
            "json_batch_dir": str(json_dir), "port": free_port(), "steps": STEPS}
    yield from run_sdk_client(python, work, plan)


def run_sdk_client(python: Path, work: Path, plan: dict):
    """Run sdk_client.py on plan (its image a tag of the caller's own, removed after) and yield its
    report, with the client's output under "log"; then remove the image's containers, the tag and
    the SDK's network when this run made it. A generator, for `yield from` in a fixture."""
    image = plan["image"]
    network_existed = docker("network", "inspect", "sagemaker-local").returncode == 0
    (work / "plan.json").write_text(json.dumps(plan))
    env = clean_env()
    for name in [k for k in env if k.startswith("AWS_")]:
        del env[name]
    env.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="smc-local", AWS_SECRET_ACCESS_KEY="smc-local",
               AWS_EC2_METADATA_DISABLED="true", PATH=compose_path_dir(work / "shim"))
    try:
        with (work / "client.log").open("w") as log:
            proc = subprocess.run([str(python), str(HERE / "sdk_client.py"), str(work / "plan.json"),
                                   str(work / "result.json")], stdout=log, stderr=subprocess.STDOUT, env=env,
                                  cwd=work, timeout=CLIENT_TIMEOUT_S, check=False)
        output = (work / "client.log").read_text()
        assert proc.returncode == 0, f"sdk_client.py exited {proc.returncode}:\n{output[-5000:]}"
        report = json.loads((work / "result.json").read_text())
        report["log"] = output
        yield report
    finally:
        for container in containers_of(image):
            docker("rm", "-f", "-v", container, timeout=60)
        docker("rmi", image)
        if not network_existed:
            docker("network", "rm", "sagemaker-local")


def step(local_mode: dict, name: str) -> dict:
    result = local_mode[name]
    assert result["ok"], f"{name} failed: {result['error']}\n{result.get('traceback', '')}"
    return result


def test_sdk_run_is_offline(local_mode):
    assert local_mode["outbound"] == []


def test_sdk_fit_trains_and_collects_model(local_mode):
    result = step(local_mode, "fit")
    assert result["model_data"].startswith("file://") and result["model_data"].endswith("/out/model.tar.gz")
    assert "model.json" in result["model_files"] and "code/inference.py" in result["model_files"]
    assert "success" in result["output_files"] and "failure" not in result["output_files"]
    # The SDK gives the container a TTY; SMC_LOG_FORMAT=json keeps smc's lines JSON there.
    plain = ANSI_ESCAPE.sub("", local_mode["log"])  # compose colours its "algo-1-xxxx |" prefixes
    lines = [line.split("|", 1)[1].strip() for line in plain.splitlines() if "|" in line]
    events = [json.loads(line)["event"] for line in lines if line.startswith('{"')]
    assert "training_succeeded" in events, local_mode["log"][-3000:]


def test_sdk_fit_failure_raises_and_keeps_failure_file(local_mode):
    result = step(local_mode, "fit_failure")
    assert result["raised"], "fit() did not raise for a failing training script"
    assert "train.py" in result["failure"] and "epochs" in result["failure"], result["failure"]


def test_sdk_deploy_predicts_csv_and_json(local_mode):
    result = step(local_mode, "deploy")
    rows = BATCH_ROWS[:2]
    csv_predictions = [float(row[0]) for row in result["csv"]]
    json_predictions = result["json"]["predictions"]
    for predictions in (csv_predictions, json_predictions):
        assert predictions == pytest.approx([tabular_truth(r) for r in rows], abs=0.2)
    assert result["bad_request_status"] == 400
    assert result["delete_endpoint_s"] < 30


@pytest.mark.parametrize("strategy", ["MultiRecord", "SingleRecord"])
def test_sdk_batch_transform(local_mode, strategy):
    result = step(local_mode, f"transform_{strategy}")
    outputs = result["outputs"]
    assert sorted(outputs) == ["part-a.csv.out", "part-b.csv.out"], outputs
    got = [float(x) for name in sorted(outputs) for x in outputs[name].split()]
    assert got == pytest.approx([tabular_truth(r) for r in BATCH_ROWS], abs=0.2)


def test_sdk_multi_record_json_lines_transform_answers_one_line_per_record(local_mode):
    """MultiRecord packs several JSON documents, one per line, into one body for a JSON handler
    (the tabular example's input_fn takes one document): smc answers each record, one output line
    per input line, in order (issue 22; huggingface/notebooks#227's "Extra data" otherwise)."""
    result = step(local_mode, "transform_json_lines")
    half = len(BATCH_ROWS) // 2
    for name, rows in (("part-a.jsonl.out", BATCH_ROWS[:half]), ("part-b.jsonl.out", BATCH_ROWS[half:])):
        lines = [line for line in result["outputs"][name].splitlines() if line.strip()]
        assert len(lines) == len(rows), result["outputs"][name]
        predictions = [json.loads(line)["predictions"][0] for line in lines]
        assert predictions == pytest.approx([tabular_truth(r) for r in rows], abs=0.2)
