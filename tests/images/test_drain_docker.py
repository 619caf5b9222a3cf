"""issue 9 through Docker: `docker stop` (SIGTERM to the container's PID 1, the onefile
bootloader, which forwards it to smc) under keep-alive POST load loses no request; a worker
leaking memory under `--memory` is called OOM-killed, and its crash loop ends smc with exit 1."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import docker
from tests.serve.keepalive_load import KeepAliveLoad

pytestmark = pytest.mark.docker

IMAGE = "smc-i9-drain:test"  # this test's own tag; smc-base and smc-example-* are shared


@pytest.fixture(scope="module")
def drain_image(docker_engine, smc_binary: Path, tmp_path_factory) -> str:
    subprocess.run(["bash", str(ROOT / "build" / "base-image.sh")], check=True, capture_output=True, timeout=900)
    context = tmp_path_factory.mktemp("drain-image")
    shutil.copy(smc_binary, context / "smc")
    (context / "code").mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "echo.py", context / "code" / "inference.py")
    shutil.copy(ROOT / "tests" / "fixtures" / "handlers" / "stubborn.py", context / "code" / "stubborn.py")
    (context / "Dockerfile").write_text(
        "FROM smc-base:latest\nCOPY smc /usr/local/bin/\nCOPY code /opt/ml/model/code\nENTRYPOINT [\"smc\"]\n")
    built = docker("build", "-q", "-t", IMAGE, str(context), timeout=300)
    assert built.returncode == 0, built.stderr
    return IMAGE


def test_docker_stop_under_keepalive_load_loses_no_request(drain_image, containers):
    _, container = containers(drain_image, "serve", detach=True, publish=True,
                              docker_args=["-e", "SMC_DRAIN_SECONDS=2", "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=2"])
    container.wait_ready(timeout_s=60)
    with KeepAliveLoad("127.0.0.1", container.port, clients=16, think_s=0.3) as load:
        time.sleep(3)
        stopped = docker("stop", "-t", "30", container.name, timeout=60)
        assert stopped.returncode == 0, stopped.stderr
        time.sleep(0.3)
    stats = load.stats
    logs = container.logs()
    assert container.exit_code() == 0, logs[-3000:]
    assert stats.lost_on_reused == 0, (stats, logs[-3000:])
    assert stats.answered > 50 and stats.told_to_close >= 16, stats
    # docker-proxy accepts new connections even after nginx stopped listening, then resets them:
    # such losses are possible only once the drain is over (before it, every request is answered).
    drained = [json.loads(line) for line in logs.splitlines() if '"event":"drain_finished"' in line][0]
    drained_at = datetime.fromisoformat(drained["ts"].replace("Z", "+00:00")).timestamp()
    early = [t for t in stats.fresh_losses_at if t < drained_at - 0.05]
    assert not early, (drained, early, stats.errors[:5])
    print(f"docker stop under keep-alive load: {stats.sent} sent, {stats.answered} answered, "
          f"{stats.lost_on_reused} lost on kept-alive connections, {stats.lost} reset by docker-proxy after the drain")


def test_oom_crash_loop_under_a_memory_limit_ends_smc_naming_the_oom_killer(drain_image, containers):
    _, container = containers(drain_image, "serve", detach=True, publish=True, docker_args=[
        "--memory", "256m", "--memory-swap", "256m", "-e", "SAGEMAKER_PROGRAM=stubborn.py",
        "-e", "SAGEMAKER_MODEL_SERVER_WORKERS=1", "-e", "SMC_WORKER_CRASH_LIMIT=3",
        "-e", "SMC_WORKER_CRASH_WINDOW_SECONDS=60"])
    container.wait_ready(timeout_s=60)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if docker("inspect", "--format", "{{.State.Running}}", container.name).stdout.strip() == "false":
            break
        try:
            request = urllib.request.Request(container.url("/invocations"), data=b'{"alloc_mb": 64}',
                                             headers={"Content-Type": "application/json"})
            urllib.request.urlopen(request, timeout=30).read()
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    logs = container.logs()
    assert container.exit_code() == 1, logs[-3000:]
    failed = [json.loads(line) for line in logs.splitlines() if '"event":"serve_failed"' in line][0]
    assert "gunicorn workers died 3 times within 60 s" in failed["reason"], failed
    assert "OOM killer" in failed["reason"], failed
