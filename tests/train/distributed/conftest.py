"""Fixtures for distributed-training tests: toolkit oracles and Docker clusters."""

from __future__ import annotations

import fcntl
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # trainkit

TF_TOOLKIT = "sagemaker-tensorflow-training==20.5.0"
TF_CACHE = Path.home() / ".cache" / "smc" / "sagemaker-tensorflow-training-20.5.0"


@pytest.fixture(scope="session")
def tf_training_py() -> Path:
    """training.py of sagemaker-tensorflow-training (its sdist; tensorflow itself is not needed)."""
    target = TF_CACHE / "training.py"
    TF_CACHE.mkdir(parents=True, exist_ok=True)
    with open(TF_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                 "--no-binary", ":all:", TF_TOOLKIT, "-d", str(TF_CACHE)],
                check=True, timeout=300,
            )  # fmt: skip
            sdist = next(TF_CACHE.glob("sagemaker_tensorflow_training-*.tar.gz"))
            with tarfile.open(sdist) as tar:
                member = next(
                    m
                    for m in tar.getmembers()
                    if m.name.endswith("sagemaker_tensorflow_container/training.py")
                )
                target.write_bytes(tar.extractfile(member).read())
    return target


@pytest.fixture(scope="session")
def mpi_image(smc_binary: Path) -> str:
    import dockercluster

    problem = dockercluster.require_docker()
    if problem:
        pytest.fail(problem)
    return dockercluster.build_image(smc_binary)


@pytest.fixture
def cluster(mpi_image: str, tmp_path: Path):
    import dockercluster

    with dockercluster.Cluster(mpi_image, tmp_path) as made:
        yield made
