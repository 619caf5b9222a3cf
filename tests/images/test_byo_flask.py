"""examples/byo-flask: the classic bring-your-own-container stack (a Flask predictor.py and an
executable `train`, with Debian 12's own python3-flask, -pandas and -sklearn) migrated to smc, run
as SageMaker runs it: `docker run IMAGE train`, `docker run IMAGE serve`, `docker stop`, the SDK's
local mode, and `smc doctor --image` before a push."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port
from tests.images.conftest import BUILD_TIMEOUT_S, docker, json_events
from tests.images.test_local_mode import run_sdk_client, sdk_python

pytestmark = pytest.mark.docker

EXAMPLE = ROOT / "examples" / "byo-flask"
IMAGE = "smc-example-byo-flask:test"
MODEL_FILE = "decision-tree-model.pkl"
# data/train.csv: the label follows the first feature (small < 3 <= medium < 6 <= large); these
# rows sit well inside each band.
ROWS = [[1.2, 3.0, 4.0], [4.4, 1.0, 1.0], [7.9, 2.0, 2.0]]
LABELS = ["small", "medium", "large"]
STOP_LIMIT_S = 10  # SageMaker sends SIGKILL 30 s after SIGTERM


@pytest.fixture(scope="module")
def image(docker_engine, smc_binary: Path) -> str:
    """smc-example-byo-flask:test, as `make images` builds it (its Debian base is cached by content)."""
    started = time.monotonic()
    result = subprocess.run(["bash", str(ROOT / "build" / "images.sh"), "byo-flask"],
                            env={**os.environ, "SMC_BINARY": str(smc_binary), "SMC_IMAGE_TAG": "test"},
                            capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, check=False)
    if result.returncode != 0:
        pytest.fail(f"build/images.sh byo-flask failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
                    f"{result.stderr[-3000:]}")
    print(f"\nbyo-flask image ready in {time.monotonic() - started:.0f} s")
    return IMAGE


def write_job(base: Path, csv_files: dict[str, str]) -> Path:
    """/opt/ml/{input,model,output} for one host, with the seed's channel name, `training`."""
    config, channel = base / "input" / "config", base / "input" / "data" / "training"
    for path in (config, channel, base / "model", base / "output"):
        path.mkdir(parents=True, exist_ok=True)
    for name, text in csv_files.items():
        (channel / name).write_text(text)
    (config / "hyperparameters.json").write_text(json.dumps({"max_leaf_nodes": "8"}))
    (config / "inputdataconfig.json").write_text(json.dumps({"training": {"TrainingInputMode": "File"}}))
    (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
    return base


def mounts(base: Path) -> list[str]:
    return [arg for sub in ("input", "model", "output") for arg in ("-v", f"{base / sub}:/opt/ml/{sub}")]


def run_name() -> str:
    return f"smc-e2e-byo-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def trained(image, tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    csv = (EXAMPLE / "data" / "train.csv").read_text()
    base = write_job(tmp_path_factory.mktemp("byo-job"), {"train.csv": csv})
    result = docker("run", "--rm", *mounts(base), image, "train", timeout=300)
    return result, base


def test_train_runs_the_seeds_train_program_and_writes_the_model(trained):
    result, base = trained
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert (base / "model" / MODEL_FILE).stat().st_size > 0
    assert (base / "output" / "success").exists() and not (base / "output" / "failure").exists()
    assert "trained a decision tree on 90 rows" in result.stdout  # the program's own print, unchanged
    events = {e["event"]: e for e in json_events(result.stdout)}
    assert events["training_started"]["kind"] == "command", events["training_started"]
    assert events["training_started"]["command"][:3] == ["./train", "--max_leaf_nodes", "8"]
    assert events["training_succeeded"]["exit_code"] == 0


def test_train_failure_keeps_the_programs_own_failure_file(image, tmp_path):
    base = write_job(tmp_path / "job", {})  # an empty channel: the program raises
    result = docker("run", "--rm", *mounts(base), image, "train", timeout=300)
    assert result.returncode == 255, f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    failure = (base / "output" / "failure").read_text()
    assert failure.startswith("Exception during training: no files in /opt/ml/input/data/training"), failure


def get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def post(url: str, body: bytes, content_type: str) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_ping(name: str, port: int, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if get(f"http://127.0.0.1:{port}/ping") == 200:
                return
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if docker("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "false":
            break
        time.sleep(0.3)
    logs = docker("logs", name)
    raise AssertionError(f"/ping never answered 200:\n{(logs.stdout + logs.stderr)[-4000:]}")


def test_serve_answers_from_the_trained_model_under_debians_python_and_stops_cleanly(image, trained):
    result, base = trained
    assert result.returncode == 0, "training failed; see the train test"
    name, port, metrics_port = run_name(), free_port(), free_port()
    started = docker("run", "-d", "--name", name, "-p", f"127.0.0.1:{port}:8080",
                     "-p", f"127.0.0.1:{metrics_port}:9100", "-e", "SMC_METRICS_PORT=9100",
                     "-v", f"{base / 'model'}:/opt/ml/model", image, "serve")
    assert started.returncode == 0, started.stderr
    try:
        wait_ping(name, port)
        url = f"http://127.0.0.1:{port}"
        csv_rows = "".join(",".join(map(str, row)) + "\n" for row in ROWS)
        status, body = post(f"{url}/invocations", csv_rows.encode(), "text/csv")
        assert (status, body.split()) == (200, LABELS), body
        # The predictor's own refusal passes through unchanged.
        status, body = post(f"{url}/invocations", b"{}", "application/json")
        assert status == 415 and "only supports CSV" in body
        # What smc refuses before the app sees it has a JSON body (docs/images.md says so).
        status, body = post(f"{url}/invocations", b"1,2,3\n" * 1_200_000, "text/csv")
        assert status == 413 and json.loads(body)["status"] == 413, body
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        assert 'smc_invocations_total{status="200"} 1' in metrics, metrics[:2000]
        stop_started = time.monotonic()
        stopped = docker("stop", "-t", "30", name, timeout=60)
        stop_s = time.monotonic() - stop_started
        assert stopped.returncode == 0, stopped.stderr
        assert docker("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
        assert stop_s < STOP_LIMIT_S, stop_s
        logs = docker("logs", name)
        events = json_events(logs.stdout + logs.stderr)
        chosen = [e for e in events if e["event"] == "python_chosen"]
        assert chosen, (logs.stdout + logs.stderr)[-3000:]
        assert chosen[0]["embedded"] is False and chosen[0]["version"].startswith("3.11."), chosen[0]
        assert chosen[0]["executable"] == "/usr/bin/python3", chosen[0]
        assert any(e["event"] == "wsgi_app_loaded" and e["app"] == "predictor:app" for e in events)
    finally:
        docker("rm", "-f", "-v", name, timeout=60)


def test_doctor_image_passes_and_imports_the_app_under_debians_python(image, smc_binary):
    done = subprocess.run([str(smc_binary), "doctor", "--json", "--image", image],
                          capture_output=True, text=True, timeout=300, check=False)
    report = json.loads(done.stdout)
    assert done.returncode == 0, report
    findings = {f["check"]: f for f in report["findings"]}
    assert findings["python"]["status"] == "ok" and "Python 3.11." in findings["python"]["message"]
    assert findings["handler"]["status"] == "ok", findings["handler"]
    assert "SMC_WSGI_APP=predictor:app" in findings["handler"]["message"]
    assert "/usr/bin/python3" in findings["handler"]["message"]
    assert findings["entry_point"]["status"] == "ok", findings["entry_point"]
    assert findings["entry_point"]["path"] == "/opt/ml/code/train"


@pytest.fixture(scope="module")
def local_mode(image, tmp_path_factory):
    """The SDK's fit, then deploy + predict, against a uniquely tagged copy of the image."""
    python = sdk_python()
    work = tmp_path_factory.mktemp("byo-sdk")  # under /tmp: the SDK refuses some mount sources
    train_dir = work / "training"
    train_dir.mkdir()
    shutil.copy(EXAMPLE / "data" / "train.csv", train_dir / "train.csv")
    tag = f"smc-sdk-byo-e2e:{uuid.uuid4().hex[:8]}"  # a tag of our own: its containers are ours
    docker("tag", image, tag, check=True)
    plan = {"image": tag, "workdir": str(work), "train_dir": str(train_dir), "batch_dir": str(train_dir),
            "port": free_port(), "steps": ["fit", "deploy_csv"], "channel": "training",
            "hyperparameters": {"max_leaf_nodes": 8}, "serve_env": {}, "rows": ROWS}
    yield from run_sdk_client(python, work, plan)


def test_sdk_local_mode_fits_deploys_and_predicts(local_mode):
    assert local_mode["outbound"] == []
    for name in ("fit", "deploy_csv"):
        step = local_mode[name]
        assert step["ok"], \
            f"{name} failed: {step['error']}\n{step.get('traceback', '')}\n{local_mode['log'][-3000:]}"
    assert MODEL_FILE in local_mode["fit"]["model_files"], local_mode["fit"]
    deployed = local_mode["deploy_csv"]
    assert [row[0] for row in deployed["csv"]] == LABELS, deployed
    assert deployed["json_status"] == 415
    assert deployed["delete_endpoint_s"] < 30
