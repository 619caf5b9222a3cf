"""`smc doctor --image` on the host: the image's metadata, then the in-image checks, before a push."""

from __future__ import annotations

import json
import subprocess
import uuid

from tests.images.conftest import docker


def _doctor_image(smc_binary, image: str) -> tuple[int, dict]:
    result = subprocess.run(
        [str(smc_binary), "doctor", "--json", "--image", image], capture_output=True, text=True, timeout=300
    )
    return result.returncode, json.loads(result.stdout)


def _finding(report: dict, check: str) -> dict:
    found = [f for f in report["findings"] if f["check"] == check]
    assert found, f"no {check} in {report['findings']}"
    return found[0]


def test_example_image_passes_with_its_labels_and_in_image_checks(smc_binary, images):
    code, report = _doctor_image(smc_binary, images["tabular"])
    assert code == 0, report
    assert _finding(report, "entrypoint")["status"] == "ok"
    assert _finding(report, "label_bind_to_port")["status"] == "ok"
    assert _finding(report, "nginx")["message"].startswith("nginx/")  # ran inside the image
    assert _finding(report, "entry_point")["status"] == "ok"


def test_shell_form_entrypoint_fails_and_a_multi_model_label_without_env_warns(smc_binary, images, tmp_path):
    tag = f"smc-doctor-broken:{uuid.uuid4().hex[:8]}"
    (tmp_path / "Dockerfile").write_text(
        f"FROM {images['tabular']}\n"
        "LABEL com.amazonaws.sagemaker.capabilities.multi-models=true\n"
        "ENTRYPOINT smc\n"
    )
    built = docker("build", "-q", "-t", tag, str(tmp_path), timeout=300)
    assert built.returncode == 0, built.stderr
    try:
        code, report = _doctor_image(smc_binary, tag)
    finally:
        docker("image", "rm", "-f", tag)
    assert code == 1
    entry = _finding(report, "entrypoint")
    assert entry["status"] == "fail" and "shell form" in entry["message"] and '["smc"]' in entry["hint"]
    multi = _finding(report, "multi_model")
    assert multi["status"] == "warn" and "ENV SAGEMAKER_MULTI_MODEL=true" in multi["hint"]


def test_missing_image_says_to_build_it(smc_binary, docker_engine):
    code, report = _doctor_image(smc_binary, "smc-no-such-image:nope")
    finding = _finding(report, "image")
    assert code == 1 and "docker build" in finding["hint"]
