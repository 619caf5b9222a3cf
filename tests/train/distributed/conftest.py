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


MPI4PY = "mpi4py==4.1.2"
MPI4PY_CACHE = Path.home() / ".cache" / "smc" / "wheels-mpi4py-4.1.2"
PYTHON_DOCKERFILE = """\
FROM {base}
# A Python MPI program on an image without Python: mpi4py for smc's embedded interpreter.
COPY mpi4py-*.whl /tmp/
RUN smc -m pip install -q --no-index --disable-pip-version-check --root-user-action=ignore /tmp/mpi4py-*.whl \\
    && rm /tmp/mpi4py-*.whl
COPY allreduce.py /opt/ml/code/allreduce.py
ENV SAGEMAKER_PROGRAM=allreduce.py
"""


@pytest.fixture(scope="session")
def mpi_python_image(mpi_image: str) -> str:
    """examples/mpi with its Python program and mpi4py (wheel fetched on the host, cached)."""
    import dockercluster

    MPI4PY_CACHE.mkdir(parents=True, exist_ok=True)
    with open(MPI4PY_CACHE / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not list(MPI4PY_CACHE.glob("*.whl")):
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
                 "--only-binary=:all:", "--python-version", "3.11", "--implementation", "cp", "--abi", "cp311",
                 "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_5_x86_64", "--platform",
                 "manylinux1_x86_64", MPI4PY, "-d", str(MPI4PY_CACHE)],
                check=True, timeout=300,
            )  # fmt: skip
    wheel = next(MPI4PY_CACHE.glob("*.whl"))
    files = {wheel.name: wheel, "allreduce.py": dockercluster.EXAMPLE / "code" / "allreduce.py"}
    return dockercluster.build_derived(mpi_image, "smc-mpi-python-test", PYTHON_DOCKERFILE, files)


@pytest.fixture
def python_cluster(mpi_python_image: str, tmp_path: Path):
    import dockercluster

    with dockercluster.Cluster(mpi_python_image, tmp_path) as made:
        yield made
