"""smc on each supported Debian release (glibc 2.31, 2.36, 2.41) as a user runs it: `COPY smc
/usr/local/bin/` into an image of that release, then version, doctor, train with the image's
python3 and with the embedded one, serve, and a two-host job on a Docker network.

Every assertion message carries the container's output: on a release whose glibc is older than
the binary needs, that is PyInstaller's "version `GLIBC_2.xx' not found"."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from tests.images.conftest import docker
from tests.images.conftest import json_events
from tests.images.distros.conftest import DISTROS, explain, model_dir, write_job
from tests.train.distributed.dockercluster import Cluster

pytestmark = pytest.mark.docker

STOP_LIMIT_S = 10  # SageMaker sends SIGKILL 30 s after SIGTERM; "well inside" that
TRAIN_TIMEOUT_S = 120


def job_mounts(base: Path) -> list[str]:
    return [arg for sub in ("input", "model", "output") for arg in ("-v", f"{base / sub}:/opt/ml/{sub}")]


def test_version(containers, image, distro):
    result, _ = containers(image, "version")
    assert result.returncode == 0 and result.stdout.startswith("smc "), (
        f"smc version on {distro}:\n{explain(result)}"
    )


def test_doctor_finds_nothing_failing(containers, image, distro, tmp_path):
    job = write_job(tmp_path / "opt_ml")
    model_dir(job / "model")
    result, _ = containers(
        image, "doctor", "--json", docker_args=[*job_mounts(job), "-e", "SAGEMAKER_PROGRAM=report.py"]
    )
    assert result.returncode == 0, f"smc doctor on {distro}:\n{explain(result)}"
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["nginx"]["message"].startswith("nginx/"), findings["nginx"]
    assert findings["entry_point"]["status"] == "ok", findings["entry_point"]
    # SAGEMAKER_PROGRAM names the training script: serve falls back to inference.py (a warning).
    assert findings["handler"]["status"] in ("ok", "warn"), findings["handler"]
    assert findings["proc"]["status"] == "ok", findings["proc"]


def train(containers, image: str, base: Path, *env: str) -> tuple[dict, list[dict]]:
    """Run `smc train` with report.py; (its report, smc's JSON lines)."""
    env_args = [arg for item in ("SAGEMAKER_PROGRAM=report.py", *env) for arg in ("-e", item)]
    result, _ = containers(
        image, "train", docker_args=[*job_mounts(base), *env_args], timeout=TRAIN_TIMEOUT_S
    )
    assert result.returncode == 0, f"smc train failed:\n{explain(result)}"
    assert (base / "output" / "success").is_file(), explain(result)
    return json.loads((base / "model" / "report.json").read_text()), json_events(result.stdout)


def started(events: list[dict]) -> dict:
    return next(e for e in events if e.get("event") == "training_started")


def test_train_with_the_images_python3(containers, image, distro, tmp_path):
    base = write_job(tmp_path / "opt_ml", hyperparameters={"epochs": "3"})
    report, events = train(containers, image, base)
    assert report["executable"] == "/usr/bin/python3", report
    assert report["version"] == DISTROS[distro], report
    assert report["argv"] == ["--epochs", "3"], report
    assert started(events)["embedded_python"] is False, started(events)


def test_train_with_the_embedded_python(containers, image, distro, tmp_path):
    base = write_job(tmp_path / "opt_ml", hyperparameters={"epochs": "3"})
    report, events = train(containers, image, base, "SMC_PYTHON=embedded")
    assert report["executable"] == "/usr/local/bin/smc" and report["frozen"], report
    assert report["argv"] == ["--epochs", "3"], report
    # The bundle's native modules (OpenSSL, SQLite, libffi, xz, bz2, ...) load on this glibc.
    assert report["failed"] == {}, report
    assert started(events)["embedded_python"] is True, started(events)


def post(url: str, body: str) -> tuple[int, str]:
    request = urllib.request.Request(
        url, data=body.encode(), method="POST", headers={"Content-Type": "text/plain", "Accept": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.status, response.read().decode()


@pytest.mark.parametrize("python", ["image", "embedded"])
def test_serve_answers_then_docker_stop_ends_it_with_0(containers, image, distro, tmp_path, python):
    """By default the image's python3 runs the workers (Debian 11's 3.9, 12's 3.11, 13's 3.13);
    SMC_PYTHON=embedded, smc's own."""
    model = model_dir(tmp_path / "model")
    chosen = [] if python == "image" else ["-e", "SMC_PYTHON=embedded"]
    result, box = containers(
        image,
        "serve",
        detach=True,
        publish=True,
        docker_args=["-v", f"{model}:/opt/ml/model", "-e", "SAGEMAKER_PROGRAM=inference.py", *chosen],
    )
    assert result.returncode == 0, explain(result)
    box.wait_ready()  # fails with the container's log
    assert post(box.url("/invocations"), "3") == (200, "6.0"), box.logs()[-4000:]
    event = next(e for e in json_events(box.logs()) if e.get("event") == "python_chosen")
    if python == "image":
        assert event["embedded"] is False and event["executable"] == "/usr/bin/python3", event
        assert event["version"].startswith(DISTROS[distro] + "."), event
    else:
        assert event["embedded"] is True, event
    stopping = time.monotonic()
    stopped = docker("stop", "-t", "30", box.name, timeout=60)
    elapsed_s = time.monotonic() - stopping
    assert stopped.returncode == 0, stopped.stderr
    assert box.exit_code() == 0, f"serve on {distro} after docker stop:\n{box.logs()[-4000:]}"
    assert elapsed_s < STOP_LIMIT_S, f"docker stop took {elapsed_s:.1f} s:\n{box.logs()[-4000:]}"


def test_two_hosts_resolve_each_other_and_talk(image, distro, tmp_path):
    with Cluster(image, tmp_path) as cluster:
        cluster.start({}, env={"SAGEMAKER_PROGRAM": "hosts.py", "SMC_PYTHON": "embedded"})
        codes = cluster.wait(timeout_s=TRAIN_TIMEOUT_S)
        logs = {name: cluster.logs(name)[-3000:] for name in codes}
        assert codes == {"algo-1": 0, "algo-2": 0}, f"two-host job on {distro}: {codes}\n{logs}"
        reports = {h.name: json.loads((h.base / "model" / "hosts.json").read_text()) for h in cluster.hosts}
    assert reports["algo-1"]["received"] == "algo-2", reports
    assert reports["algo-2"]["received"] == "hello from algo-1", reports
    # Both hosts resolved both names, to the same addresses.
    assert reports["algo-1"]["addresses"] == reports["algo-2"]["addresses"], reports
    assert set(reports["algo-1"]["addresses"]) == {"algo-1", "algo-2"}, reports
