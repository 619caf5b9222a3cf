"""dist/smc-aarch64 under emulation (qemu-user, through Docker): version, doctor, a one-host train
job, serve with /ping and one invocation, and SIGTERM, in an arm64 Debian 12 image; and the glibc
2.17 baseline of every ELF file the binary carries.

It needs dist/smc-aarch64 and skips without it: CI (.ci/run) runs `make binary ARCH=aarch64` before
`make test`, so it runs there; by hand, after that build (SMC_ARM64_BINARY names another binary):
    make test PYTEST_ARGS="tests/arm64 -q"
The build is a full one under emulation the first time (minutes), then seconds while only smc's
own code changes (build/arm64/binary.sh, repack.py). Timings under emulation say nothing of
Graviton's speed; the bounds below are for a hung process, not for performance."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from tests.arm64.conftest import arm64_binary
from tests.cli.test_glibc_baseline import elf_files, needed_versions, too_new
from tests.images.conftest import docker, json_events
from tests.images.distros.conftest import explain, model_dir, write_job

if not arm64_binary().is_file():
    pytest.skip(
        f"{arm64_binary()} is absent: build it with `make binary ARCH=aarch64` (or set SMC_ARM64_BINARY)",
        allow_module_level=True,
    )

pytestmark = pytest.mark.docker

EMULATED_TIMEOUT_S = 300  # one command under qemu-user
STOP_LIMIT_S = 20  # SageMaker sends SIGKILL 30 s after SIGTERM


def job_mounts(base) -> list[str]:
    return [arg for sub in ("input", "model", "output") for arg in ("-v", f"{base / sub}:/opt/ml/{sub}")]


def test_version_on_an_aarch64_machine(containers, arm64_image):
    result, _ = containers(arm64_image, "version", timeout=EMULATED_TIMEOUT_S)
    assert result.returncode == 0 and result.stdout.startswith("smc "), explain(result)
    machine, _ = containers(arm64_image, "python", "-c", "import platform; print(platform.machine())",
                            timeout=EMULATED_TIMEOUT_S)
    assert machine.stdout.strip() == "aarch64", explain(machine)


def test_doctor_finds_nothing_failing(containers, arm64_image, tmp_path):
    job = write_job(tmp_path / "opt_ml")
    model_dir(job / "model")
    result, _ = containers(arm64_image, "doctor", "--json",
                           docker_args=[*job_mounts(job), "-e", "SAGEMAKER_PROGRAM=report.py"],
                           timeout=EMULATED_TIMEOUT_S)
    assert result.returncode == 0, explain(result)
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    assert findings["nginx"]["message"].startswith("nginx/"), findings["nginx"]
    assert findings["entry_point"]["status"] == "ok", findings["entry_point"]


def test_one_host_train_with_the_embedded_python(containers, arm64_image, tmp_path):
    """The embedded interpreter: the bundle's aarch64 native modules (OpenSSL, SQLite, libffi, ...)."""
    base = write_job(tmp_path / "opt_ml", hyperparameters={"epochs": "3"})
    result, _ = containers(arm64_image, "train",
                           docker_args=[*job_mounts(base), "-e", "SAGEMAKER_PROGRAM=report.py",
                                        "-e", "SMC_PYTHON=embedded"],
                           timeout=EMULATED_TIMEOUT_S)
    assert result.returncode == 0 and (base / "output" / "success").is_file(), explain(result)
    report = json.loads((base / "model" / "report.json").read_text())
    assert report["frozen"] and report["argv"] == ["--epochs", "3"] and report["failed"] == {}, report
    started = next(e for e in json_events(result.stdout) if e.get("event") == "training_started")
    assert started["embedded_python"] is True, started


def test_serve_answers_ping_and_an_invocation_then_sigterm_ends_it_with_0(containers, arm64_image, tmp_path):
    """The image's python3 (Debian 12's 3.11, aarch64) runs the workers, nginx-light in front."""
    model = model_dir(tmp_path / "model")
    mounts = ["-v", f"{model}:/opt/ml/model", "-e", "SAGEMAKER_PROGRAM=inference.py"]
    result, box = containers(arm64_image, "serve", detach=True, publish=True, docker_args=mounts)
    assert result.returncode == 0, explain(result)
    box.wait_ready(timeout_s=EMULATED_TIMEOUT_S)
    request = urllib.request.Request(box.url("/invocations"), data=b"3", method="POST",
                                     headers={"Content-Type": "text/plain", "Accept": "text/plain"})
    with urllib.request.urlopen(request, timeout=60) as response:
        assert (response.status, response.read().decode()) == (200, "6.0"), box.logs()[-4000:]
    stopping = time.monotonic()
    stopped = docker("stop", "-t", "30", box.name, timeout=60)  # SIGTERM, SIGKILL after 30 s
    elapsed_s = time.monotonic() - stopping
    assert stopped.returncode == 0, stopped.stderr
    assert box.exit_code() == 0, box.logs()[-4000:]
    assert elapsed_s < STOP_LIMIT_S, f"docker stop took {elapsed_s:.1f} s:\n{box.logs()[-4000:]}"


def test_every_elf_file_is_aarch64_and_needs_glibc_2_17_at_most(containers, arm64_image, tmp_path):
    """The x86_64 binary's baseline check (tests/cli/test_glibc_baseline.py) on what the aarch64
    one unpacks, copied out by the binary itself running under emulation."""
    out = tmp_path / "out"
    out.mkdir(mode=0o777)
    copy = "import shutil, sys; shutil.copytree(sys._MEIPASS, '/out/bundle')"
    result, _ = containers(arm64_image, "python", "-c", copy, docker_args=["-v", f"{out}:/out"],
                           timeout=EMULATED_TIMEOUT_S)
    assert result.returncode == 0, explain(result)
    files = [arm64_binary(), *elf_files(out / "bundle")]
    assert {"libpython3.11.so.1.0", "libssl.so.3", "libcrypto.so.3"} <= {p.name for p in files}
    assert len(files) > 50, files
    machines = {p.name: _machine(p) for p in files}
    assert set(machines.values()) == {"AArch64"}, machines
    offenders = [f"{p.name}: {family}_{version}" for p in files for family, version in needed_versions(p)
                 if too_new(family, version)]
    assert not offenders, "\n".join(sorted(set(offenders)))


def _machine(path) -> str:
    header = subprocess.run(["readelf", "-h", str(path)], capture_output=True, text=True, check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in header.splitlines() if "Machine:" in line)


def test_doctor_image_on_the_host_finds_the_images_aarch64_smc_matching(smc_binary, arm64_image):
    """The host's smc (x86_64) checks the arm64 image: the architecture compared is that of the
    smc inside it, which reports its own machine when it runs (here under emulation)."""
    result = subprocess.run([str(smc_binary), "doctor", "--json", "--image", arm64_image, "serve"],
                            capture_output=True, text=True, timeout=EMULATED_TIMEOUT_S)
    findings = {f["check"]: f for f in json.loads(result.stdout)["findings"]}
    arch = findings["architecture"]
    assert arch["status"] == "ok" and "its smc aarch64" in arch["message"], arch
