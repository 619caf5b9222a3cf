"""Features a user migrating from sagemaker-inference relies on: the pre_model_fn/model_warmup_fn
hooks, code/requirements.txt at start, GPU-aware workers (the frozen binary, real nginx)."""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from tests import fake_codeartifact
from tests.conftest import ROOT
from tests.fake_codeartifact import FakeCodeArtifact
from tests.serve.wheels import build_wheel
from tests.stand_ins import NVIDIA_SMI_SERVE_ARGS, write_tool

# Under smc's embedded Python and under a real CPython as the image's (tests/conftest.py).
pytestmark = pytest.mark.both_pythons

PARITY = ROOT / "tests" / "fixtures" / "parity"


def install_parity_handler(base, name: str) -> None:
    code = base / "model" / "code"
    code.mkdir(parents=True, exist_ok=True)
    shutil.copy(PARITY / f"{name}.py", code / "inference.py")


def test_hooks_run_around_model_fn_in_every_worker(start_server, opt_ml):
    install_parity_handler(opt_ml, "hooks")
    server = start_server(None, env={"SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    answer = server.invoke([1]).json()
    assert answer == {"calls": [["pre_model_fn", True], ["model_fn"], ["model_warmup_fn", ["warm"]]],
                      "model": {"warm": True}}


def test_failing_warmup_fails_start_up_like_model_fn(start_server, opt_ml):
    install_parity_handler(opt_ml, "hooks")
    server = start_server(None, env={"HOOKS_FAIL_WARMUP": "1"}, wait=False)
    assert server.wait_exit(timeout=30) == 4
    failed = server.wait_event("model_load_failed")
    assert "model_warmup_fn raised RuntimeError: warm-up request failed" in failed["error"]
    assert server.ping() is None


# -- code/requirements.txt at start ---------------------------------------------------------------
# Offline: pip reads PIP_NO_INDEX/PIP_FIND_LINKS from the environment, and the wheels are built here.
def requirements_env(tmp_path, *wheels: tuple[str, str, str], prefix=None) -> dict[str, str]:
    links = tmp_path / "wheels"
    for name, version, source in wheels:
        build_wheel(links, name, version, source)
    return {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(links),
            "SMC_PREFIX": str(prefix or tmp_path / "prefix")}


def with_requirements(base, text: str, modules: str) -> None:
    install_parity_handler(base, "uses_package")
    (base / "model" / "code" / "requirements.txt").write_text(text)


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_requirements_are_installed_before_ping_and_user_packages_win(start_server, opt_ml, tmp_path):
    # itsdangerous is bundled in the binary (flask's dependency): the user's pin must win.
    env = requirements_env(tmp_path, ("smc-parity-pkg", "1.0", "VALUE = 'from requirements'\n"),
                           ("itsdangerous", "99.0", "__version__ = '99.0-user'\n"))
    with_requirements(opt_ml, "smc-parity-pkg==1.0\nitsdangerous==99.0\n", "")
    server = start_server(None, env={**env, "PARITY_MODULES": "smc_parity_pkg,itsdangerous",
                                     "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    answer = server.invoke([1]).json()
    site = str(tmp_path / "prefix" / "lib")
    assert answer["smc_parity_pkg"][0] == "from requirements" and answer["smc_parity_pkg"][2].startswith(site)
    assert answer["itsdangerous"][1] == "99.0-user"
    installed = server.events("requirements_installed")
    assert len(installed) == 1 and "smc-parity-pkg-1.0" in installed[0]["pip"], server.output()
    # Installed before gunicorn started, so before /ping could be 200.
    started = [r["event"] for r in server.lines() if r.get("event") in ("requirements_installed", "child_started")]
    assert started[0] == "requirements_installed", started


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_read_only_prefix_installs_into_a_private_dir(start_server, opt_ml, tmp_path):
    env = requirements_env(tmp_path, ("smc-parity-pkg", "1.0", "VALUE = 'private'\n"),
                           prefix="/proc/smc-read-only-prefix")
    with_requirements(opt_ml, "smc-parity-pkg\n", "")
    server = start_server(None, env={**env, "PARITY_MODULES": "smc_parity_pkg"})
    assert server.invoke([1]).json()["smc_parity_pkg"][0] == "private"
    started = server.events("requirements_install_started")[0]
    assert started["private_target"] is True and "smc-requirements-" in started["target"]
    private = Path(started["target"]).parent
    assert private.is_dir()
    assert server.stop() == 0
    assert not private.exists(), "the private install dir outlived smc"  # issue 24 item 16


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_a_failed_private_install_leaves_no_dir_behind(start_server, opt_ml, tmp_path):
    import tempfile

    env = requirements_env(tmp_path, prefix="/proc/smc-read-only-prefix")
    with_requirements(opt_ml, "smc-no-such-package==1.0\n", "")
    run_tmp = Path(tempfile.mkdtemp(prefix="smc-r-"))
    try:
        server = start_server(None, env={**env, "PARITY_MODULES": "json", "TMPDIR": str(run_tmp)}, wait=False)
        assert server.wait_exit(timeout=60) == 1
        assert server.events("requirements_install_started")[0]["private_target"] is True
        assert not list(run_tmp.glob("smc-requirements-*"))
    finally:
        shutil.rmtree(run_tmp, ignore_errors=True)


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_unresolvable_requirements_fail_start_up_with_pips_error(start_server, opt_ml, tmp_path):
    env = requirements_env(tmp_path)
    with_requirements(opt_ml, "smc-no-such-package==1.0\n", "")
    server = start_server(None, env={**env, "PARITY_MODULES": "json"}, wait=False)
    assert server.wait_exit(timeout=60) == 1
    assert server.ping() is None
    failed = server.events("command_failed")[0]
    assert "pip install -r" in failed["error"] and "smc-no-such-package" in failed["error"], failed
    assert "No matching distribution" in failed["error"], failed


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_unreachable_index_is_bounded_by_the_timeout(start_server, opt_ml, tmp_path):
    # A "package index" that accepts connections and never answers: pip would wait and retry.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with_requirements(opt_ml, "smc-parity-pkg\n", "")
        env = {"PIP_INDEX_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
               "SMC_PREFIX": str(tmp_path / "prefix"), "SMC_REQUIREMENTS_TIMEOUT_SECONDS": "4",
               "PARITY_MODULES": "json"}
        started = time.monotonic()
        server = start_server(None, env=env, wait=False)
        assert server.wait_exit(timeout=60) == 1
    assert time.monotonic() - started < 30
    failed = server.events("command_failed")[0]
    assert "did not finish within 4 s" in failed["error"], failed
    assert "CA_REPOSITORY_ARN" in failed["hint"]


def test_install_can_be_turned_off(start_server, opt_ml, tmp_path):
    with_requirements(opt_ml, "smc-no-such-package==1.0\n", "")
    server = start_server(None, env={"SMC_INSTALL_REQUIREMENTS": "false", "PARITY_MODULES": "json",
                                     "SMC_PREFIX": str(tmp_path / "prefix")})
    assert server.invoke([1]).status == 200
    assert server.events("requirements_skipped")


# -- GPU-aware workers ------------------------------------------------------------------------------
# This machine has no GPU: a stand-in nvidia-smi on PATH (tests/stand_ins.py) answers the one
# query smc makes (`nvidia-smi --query-gpu=index --format=csv,noheader,nounits`) the way the real
# one does, and refuses any other arguments (exit 9: smc then sees no GPU and the test fails).
def fake_nvidia_smi(tmp_path, script: str) -> dict[str, str]:
    bin_dir = tmp_path / "fake-bin"
    write_tool(bin_dir / "nvidia-smi", NVIDIA_SMI_SERVE_ARGS, script)
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}"}


def assigned_gpus(server, count: int, timeout_s: float = 20) -> list[str]:
    """The GPUs of the first `count` worker_gpu_assigned events (workers boot one after another)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        events = server.events("worker_gpu_assigned")
        if len(events) >= count:
            return sorted(e["gpu"] for e in events)
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} worker_gpu_assigned events:\n{server.output()}")


def concurrent_answers(server, count: int) -> list[dict]:
    with concurrent.futures.ThreadPoolExecutor(count) as pool:
        return [r.json() for r in pool.map(lambda _: server.invoke([1]), range(count))]


def test_one_worker_per_gpu_each_pinned_to_its_own(start_server, opt_ml, tmp_path):
    install_parity_handler(opt_ml, "gpu")
    server = start_server(None, env=fake_nvidia_smi(tmp_path, "echo 0; echo 1"))
    detected = server.events("gpus_detected")[0]
    assert detected["count"] == 2 and detected["workers"] == 2 and detected["workers_from"] == "gpus"
    assert assigned_gpus(server, 2) == ["0", "1"]
    seen = {}
    for _ in range(5):  # bounded: until both workers answered
        for answer in concurrent_answers(server, 4):
            seen[answer["pid"]] = (answer["cuda_visible_devices"], answer["gpu_id"])
        if len(seen) == 2:
            break
    assert sorted(seen.values()) == [("0", 0), ("1", 0)]


def test_workers_setting_wins_and_gpus_are_shared_round_robin(start_server, opt_ml, tmp_path):
    install_parity_handler(opt_ml, "gpu")
    server = start_server(None, env={**fake_nvidia_smi(tmp_path, "echo 0; echo 1"),
                                     "SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    assert server.events("gpus_detected")[0]["workers_from"] == "SAGEMAKER_MODEL_SERVER_WORKERS"
    assert assigned_gpus(server, 3) == ["0", "0", "1"]


@pytest.mark.parametrize("script", ["echo 'NVIDIA-SMI has failed' >&2; exit 9", "exit 0"],
                         ids=["nvidia_smi_fails", "zero_gpus"])
def test_no_usable_gpu_keeps_cpu_defaults(start_server, opt_ml, tmp_path, script):
    install_parity_handler(opt_ml, "gpu")
    server = start_server(None, env=fake_nvidia_smi(tmp_path, script))
    detected = server.events("gpus_detected")[0]
    assert detected["count"] == 0 and detected["workers_from"] == "cpus", detected
    assert not server.events("worker_gpu_assigned")
    assert server.invoke([1]).json()["gpu_id"] is None


# -- CodeArtifact (CA_REPOSITORY_ARN) --------------------------------------------------------------
@pytest.fixture
def codeartifact(tmp_path):
    build_wheel(tmp_path / "ca-wheels", "smc-parity-pkg", "2.0", "VALUE = 'from codeartifact'\n")
    server = FakeCodeArtifact(tmp_path / "ca-wheels")
    yield server
    server.close()


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_codeartifact_repository_serves_the_requirements(start_server, opt_ml, tmp_path, codeartifact):
    with_requirements(opt_ml, "smc-parity-pkg==2.0\n", "")
    server = start_server(None, env={**codeartifact.env(), "SMC_PREFIX": str(tmp_path / "prefix"),
                                     "PARITY_MODULES": "smc_parity_pkg"})
    assert server.invoke([1]).json()["smc_parity_pkg"][0] == "from codeartifact"
    assert [c[:2] for c in codeartifact.calls[:2]] == [("POST", "/v1/authorization-token"),
                                                       ("GET", "/v1/repository/endpoint")]
    assert all(status == 200 for _, path, status in codeartifact.calls if path.startswith("/v1/"))
    index = server.events("codeartifact_index")[0]
    assert index["index"] == f"http://aws:***@{codeartifact.url[7:]}/pypi/my-repo/simple/"
    assert fake_codeartifact.TOKEN not in server.output()  # the token never reaches the log


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
@pytest.mark.parametrize("env, message", [
    ({"CA_REPOSITORY_ARN": "arn:aws:codeartifact:eu-west-1:123:repository/my-domain"},
     "is not a CodeArtifact repository ARN"),
    ({"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": ""}, "no AWS credentials to get a CodeArtifact token"),
    ({"AWS_SECRET_ACCESS_KEY": "wrong"}, "GetAuthorizationToken for my-domain/my-repo failed: HTTP 403"),
], ids=["malformed_arn", "no_credentials", "bad_signature"])
def test_codeartifact_errors_are_named(start_server, opt_ml, tmp_path, codeartifact, env, message):
    with_requirements(opt_ml, "smc-parity-pkg==2.0\n", "")
    server = start_server(None, env={**codeartifact.env(), **env, "SMC_PREFIX": str(tmp_path / "prefix"),
                                     "PARITY_MODULES": "json"}, wait=False)
    assert server.wait_exit(timeout=60) != 0
    failed = server.events("command_failed")[0]
    assert message in failed["error"], failed


@pytest.mark.embedded_only("installs into SMC_PREFIX; the image's pip: tests/serve/test_image_python.py")
def test_sigterm_during_the_install_stops_pip_and_exits(start_server, opt_ml, tmp_path):
    with socket.socket() as silent:  # an index that never answers keeps pip busy
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        with_requirements(opt_ml, "smc-parity-pkg\n", "")
        server = start_server(None, wait=False, env={
            "PIP_INDEX_URL": f"http://127.0.0.1:{silent.getsockname()[1]}/simple",
            "SMC_PREFIX": str(tmp_path / "prefix"), "PARITY_MODULES": "json"})
        server.wait_event("requirements_install_started", timeout=30)
        time.sleep(0.5)
        assert server.stop(signal.SIGTERM, timeout=15) == 128 + signal.SIGTERM
        assert server.events("stopped_by_signal"), server.output()
    leftover = subprocess.run(["pgrep", "-f", f"{tmp_path / 'prefix'}"], capture_output=True, text=True).stdout
    assert not leftover.strip(), f"pip still running: {leftover}"
