"""The example images as SageMaker runs them: `docker run IMAGE train` and `docker run -p IMAGE serve`."""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from tests.images.conftest import MODEL_FILE, docker, job_mounts, json_events, write_job

pytestmark = pytest.mark.docker

FIXTURES = Path(__file__).parent / "fixtures"
# examples/tabular/data/train.csv was made from y = 2 x1 - 3 x2 + 0.5 x3 + 1; sklearn's from
# y = 1.5 x1 - 2 x2 + 0.25 x3 + 4 (plus a little noise each).
EXPECTED = {"tabular": lambda r: 2 * r[0] - 3 * r[1] + 0.5 * r[2] + 1,
            "sklearn": lambda r: 1.5 * r[0] - 2 * r[1] + 0.25 * r[2] + 4}
ROWS = [[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]]
# SageMaker sends SIGTERM, then SIGKILL 30 s later; "well inside" that.
STOP_LIMIT_S = 10
# The images set SAGEMAKER_PROGRAM=train.py for `smc train`; `smc serve` reads the same variable as
# its handler module, so serving names the handler explicitly (as the SDK's Model(env=) does).
SERVE_ENV = ["-e", "SAGEMAKER_PROGRAM=inference.py"]


def post(url: str, body: str, content_type: str, accept: str, timeout_s: float = 30) -> tuple[int, str]:
    req = urllib.request.Request(url, data=body.encode(), method="POST",
                                 headers={"Content-Type": content_type, "Accept": accept})
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        return resp.status, resp.read().decode()


@pytest.fixture(scope="session")
def trained(images, tmp_path_factory):
    """trained(example) -> the /opt/ml tree of one successful training run, made once per session."""
    done: dict[str, Path] = {}

    def train(example: str) -> Path:
        if example not in done:
            base = write_job(tmp_path_factory.mktemp(f"job-{example}"), example)
            result = docker("run", "--rm", *job_mounts(base), images[example], "train", timeout=300)
            assert result.returncode == 0, f"training {example} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            done[example] = base
        return done[example]

    return train


def assert_predictions(example: str, predictions: list[float]) -> None:
    assert len(predictions) == len(ROWS)
    for row, got in zip(ROWS, predictions):
        assert got == pytest.approx(EXPECTED[example](row), abs=0.2), (row, predictions)


def serve_and_check(containers, image: str, model_dir: Path, example: str, docker_args: list[str] = ()):
    result, box = containers(image, "serve", detach=True, publish=True,
                             docker_args=["-v", f"{model_dir}:/opt/ml/model", *SERVE_ENV, *docker_args])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    csv_rows = "".join(",".join(str(x) for x in row) + "\n" for row in ROWS)
    status, body = post(box.url("/invocations"), csv_rows, "text/csv", "text/csv")
    assert status == 200
    assert_predictions(example, [float(line) for line in body.split()])
    status, body = post(box.url("/invocations"), json.dumps({"instances": ROWS}), "application/json",
                        "application/json")
    assert status == 200
    assert_predictions(example, json.loads(body)["predictions"])
    return box


def stop(box, timeout_s: int = 30) -> float:
    started = time.monotonic()
    result = docker("stop", "-t", str(timeout_s), box.name, timeout=timeout_s + 30)
    assert result.returncode == 0, result.stderr
    return time.monotonic() - started


@pytest.mark.parametrize("example", ["tabular", "sklearn"])
def test_image_has_no_python(images, containers, example):
    result, _ = containers(images[example], "-c", "command -v python3", docker_args=["--entrypoint", "/bin/sh"])
    assert result.returncode != 0 and result.stdout.strip() == "", f"python3 found: {result.stdout!r}"
    result, _ = containers(images[example], "-c", "command -v python python3.11 || echo none",
                           docker_args=["--entrypoint", "/bin/sh"])
    assert result.stdout.strip() == "none"


EMBEDDED_CHECKS = {
    "tabular": "import ssl, sqlite3, json, ctypes; print(ssl.OPENSSL_VERSION)",
    "sklearn": "import sklearn, numpy; print(sklearn.__file__)",
    "scratch": "import ssl, sqlite3, json, ctypes; print(ssl.OPENSSL_VERSION)",
}


@pytest.mark.parametrize("example", ["tabular", "sklearn", "scratch"])
def test_embedded_python_runs_in_image(images, containers, example):
    result, _ = containers(images[example], "version")
    assert result.returncode == 0 and result.stdout.startswith("smc "), result.stderr
    result, _ = containers(images[example], "python", "-c", EMBEDDED_CHECKS[example])
    assert result.returncode == 0, result.stderr
    if example == "sklearn":  # installed at build time into SMC_PREFIX's site-packages
        assert result.stdout.startswith("/opt/smc/lib/python3.11/site-packages/sklearn/"), result.stdout
    else:
        assert "OpenSSL" in result.stdout


@pytest.mark.parametrize("example", ["tabular", "sklearn", "scratch"])
def test_train_writes_model_and_exits_0(images, containers, tmp_path, example):
    base = write_job(tmp_path / "opt_ml", example)
    result, _ = containers(images[example], "train", docker_args=job_mounts(base))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (base / "model" / MODEL_FILE[example]).is_file()
    assert (base / "model" / "code" / "inference.py").is_file()
    assert (base / "output" / "success").is_file()
    assert not (base / "output" / "failure").exists()
    # No terminal: smc's own lines are JSON objects.
    assert "training_succeeded" in [e.get("event") for e in json_events(result.stdout)]


@pytest.mark.parametrize("example", ["tabular", "scratch"])
def test_failing_script_leaves_failure_file_and_nonzero_exit(images, containers, tmp_path, example):
    base = write_job(tmp_path / "opt_ml", example, {"epochs": "not-a-number"})  # argparse exits 2
    result, _ = containers(images[example], "train", docker_args=job_mounts(base))
    assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
    failure = (base / "output" / "failure").read_text()
    assert "train.py" in failure and "epochs" in failure, failure
    assert not (base / "output" / "success").exists()


def test_docker_stop_during_training_writes_failure_and_exits_143(images, containers, tmp_path):
    base = write_job(tmp_path / "opt_ml", "tabular", {"epochs": "100000000", "learning-rate": "0.01"})
    result, box = containers(images["tabular"], "train", detach=True, docker_args=job_mounts(base))
    assert result.returncode == 0, result.stderr
    deadline = time.monotonic() + 60
    while "epoch=" not in box.logs():  # the script is running
        assert time.monotonic() < deadline, box.logs()[-3000:]
        time.sleep(0.2)
    elapsed_s = stop(box)
    assert box.exit_code() == 143, box.logs()[-3000:]  # 128 + SIGTERM, as SageMaker expects
    assert elapsed_s < STOP_LIMIT_S, f"docker stop took {elapsed_s:.1f} s"
    assert "SIGTERM" in (base / "output" / "failure").read_text()


@pytest.mark.parametrize("example", ["tabular", "sklearn"])
def test_serve_answers_ping_and_invocations_then_stops_with_0(images, containers, trained, example):
    box = serve_and_check(containers, images[example], trained(example) / "model", example)
    elapsed_s = stop(box)
    assert box.exit_code() == 0, box.logs()[-3000:]
    assert elapsed_s < STOP_LIMIT_S, f"docker stop took {elapsed_s:.1f} s"


def test_docker_stop_drains_in_flight_request(images, containers, tmp_path):
    model = tmp_path / "model"
    (model / "code").mkdir(parents=True)
    model.chmod(0o777)  # the handler writes its in_flight marker here
    shutil.copy(FIXTURES / "slow_inference.py", model / "code" / "inference.py")
    result, box = containers(images["tabular"], "serve", detach=True, publish=True,
                             docker_args=["-v", f"{model}:/opt/ml/model", *SERVE_ENV])
    assert result.returncode == 0, result.stderr
    box.wait_ready()
    answer: dict[str, object] = {}

    def slow_request():
        try:
            answer["reply"] = post(box.url("/invocations"), "3", "text/plain", "application/json")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            answer["error"] = repr(exc)

    client = threading.Thread(target=slow_request)
    client.start()
    deadline = time.monotonic() + 20
    while not (model / "in_flight").exists():  # the handler has the request and sleeps
        assert time.monotonic() < deadline and client.is_alive(), answer or box.logs()[-3000:]
        time.sleep(0.05)
    elapsed_s = stop(box)
    client.join(timeout=30)
    assert answer.get("reply") == (200, json.dumps({"slept_s": 3.0})), answer
    assert box.exit_code() == 0, box.logs()[-3000:]
    assert 2 <= elapsed_s < STOP_LIMIT_S, f"docker stop took {elapsed_s:.1f} s"


def test_runs_as_user_1000(images, containers, tmp_path):
    base = write_job(tmp_path / "opt_ml", "tabular")
    result, _ = containers(images["tabular"], "train", docker_args=["--user", "1000", *job_mounts(base)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (base / "model" / "model.json").stat().st_uid == 1000
    box = serve_and_check(containers, images["tabular"], base / "model", "tabular", ["--user", "1000"])
    stop(box)
    assert box.exit_code() == 0, box.logs()[-3000:]


def test_read_only_root_with_exec_tmpfs(images, containers, tmp_path):
    read_only = ["--read-only", "--tmpfs", "/tmp:exec"]
    base = write_job(tmp_path / "opt_ml", "tabular")
    result, _ = containers(images["tabular"], "train", docker_args=[*read_only, *job_mounts(base)])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    box = serve_and_check(containers, images["tabular"], base / "model", "tabular", read_only)
    stop(box)
    assert box.exit_code() == 0, box.logs()[-3000:]


def test_read_only_root_with_noexec_tmpfs_fails_at_unpack(images, containers):
    # Documents the limit of a one-file binary: it unpacks its libraries to $TMPDIR and maps them
    # executable, so a noexec /tmp (Docker's --tmpfs default) stops it before smc's code runs.
    result, _ = containers(images["tabular"], "version", docker_args=["--read-only", "--tmpfs", "/tmp"])
    assert result.returncode != 0
    assert "failed to map segment" in result.stderr, result.stderr


def test_scratch_serve_says_nginx_is_missing(images, containers, tmp_path):
    (tmp_path / "model" / "code").mkdir(parents=True)
    shutil.copy(FIXTURES / "slow_inference.py", tmp_path / "model" / "code" / "inference.py")
    result, _ = containers(images["scratch"], "serve", docker_args=["-v", f"{tmp_path / 'model'}:/opt/ml/model",
                                                                   *SERVE_ENV])
    assert result.returncode == 3, result.stdout[-2000:] + result.stderr[-2000:]
    assert "nginx not found" in result.stdout + result.stderr


def test_image_sizes_are_reported(images):
    # Printed in the terminal summary too; here the numbers a regression would move.
    sizes = {}
    for image in images.values():
        out = docker("image", "inspect", "--format", "{{.Size}}", image, check=True)
        sizes[image] = int(out.stdout.strip())
        print(f"{image}: {sizes[image] / 1e6:.1f} MB")
    assert sizes["smc-example-scratch:test"] < 40e6  # the binary and nothing else
