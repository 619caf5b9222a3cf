"""`smc doctor --image` on the host: the image's metadata, then the in-image checks, before a push."""

from __future__ import annotations

import hashlib
import io
import json
import platform
import subprocess
import tarfile
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
    assert _finding(report, "architecture")["status"] == "ok"
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


def _tar(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _load_image_of_architecture(tag: str, architecture: str) -> None:
    """A one-file image whose config says `architecture`, loaded from a hand-made `docker save`
    archive: no registry, no emulation (`docker import --platform` keeps the host's architecture
    on Docker 20.10)."""
    layer = _tar({"etc/smc-arch-probe": b"probe\n"})
    config = json.dumps({
        "architecture": architecture, "os": "linux", "config": {"Entrypoint": ["smc"]},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()]},
    }).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": ["layer.tar"]}]).encode()
    archive = _tar({"layer.tar": layer, config_name: config, "manifest.json": manifest})
    loaded = subprocess.run(["docker", "load"], input=archive, capture_output=True, timeout=60)
    assert loaded.returncode == 0, loaded.stderr.decode(errors="replace")


def test_an_image_of_the_other_architecture_fails_with_the_binary_to_copy(smc_binary, docker_engine):
    other = "arm64" if platform.machine() == "x86_64" else "amd64"
    tag = f"smc-doctor-arch:{uuid.uuid4().hex[:8]}"
    _load_image_of_architecture(tag, other)
    try:
        code, report = _doctor_image(smc_binary, tag)
    finally:
        docker("image", "rm", "-f", tag)
    assert code == 1
    arch = _finding(report, "architecture")
    assert arch["status"] == "fail" and f"linux/{other}" in arch["message"], arch
    assert ("dist/smc-aarch64" if other == "arm64" else "dist/smc (make binary)") in arch["hint"], arch

