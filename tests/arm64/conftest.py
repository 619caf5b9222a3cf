"""The arm64 smoke test's image: the arm64 Debian 12 root of `make binary ARCH=aarch64`
(build/arm64/rootfs.sh: nginx-light and python3, as a serving image has) with dist/smc-aarch64 and
the distribution tests' code/ in it, run by Docker through qemu-user (build/arm64/qemu.sh)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.images.conftest import containers, docker_engine  # noqa: F401 (fixtures used here)
from tests.images.distros.conftest import CODE
from tests.train.distributed.dockercluster import build_derived

DOCKERFILE = """\
FROM {base}
COPY smc /usr/local/bin/smc
COPY report.py inference.py /opt/ml/code/
ENTRYPOINT ["smc"]
"""


def arm64_binary() -> Path:
    return Path(os.environ.get("SMC_ARM64_BINARY") or ROOT / "dist" / "smc-aarch64").resolve()


@pytest.fixture(scope="session")
def arm64_image(docker_engine) -> str:  # noqa: F811 (the imported fixture)
    for script in ("qemu.sh", "rootfs.sh"):
        done = subprocess.run(["bash", str(ROOT / "build" / "arm64" / script)], capture_output=True,
                              text=True, timeout=900, check=False)
        if done.returncode != 0:
            pytest.fail(f"build/arm64/{script} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    base = done.stdout.strip().splitlines()[-1]
    files = {"smc": arm64_binary(), **{p.name: p for p in (CODE / "report.py", CODE / "inference.py")}}
    return build_derived(base, "smc-arm64-test", DOCKERFILE, files)
