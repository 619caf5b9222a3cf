"""MPI with a Python program (mpi4py) on an image without Python: every rank runs
`smc -m mpi4py allreduce.py` (smc's embedded interpreter), as the toolkit runs `python -m mpi4py`."""

from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_mpi4py_allreduce_runs_on_the_embedded_interpreter(python_cluster):
    python_cluster.start({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2})
    codes = python_cluster.wait(120)
    log = python_cluster.logs("algo-1")
    assert codes == {"algo-1": 0, "algo-2": 0}, log[-3000:]
    hosts = dict(re.findall(r"allreduce rank=(\d+) size=4 host=(\S+) sum=10 expected=10 ok", log))
    assert hosts == {"0": "algo-1", "1": "algo-1", "2": "algo-2", "3": "algo-2"}
    assert (python_cluster.host("algo-1").base / "model/allreduce.txt").read_text() == "size=4 sum=10\n"


def test_an_exception_on_one_python_rank_aborts_the_job_and_names_it(python_cluster):
    python_cluster.start({"sagemaker_mpi_enabled": True, "fail-rank": 1, "sleep-s": 60})
    codes = python_cluster.wait(60)  # not 60 s of sleep on rank 0: mpi4py aborts the job
    assert codes["algo-1"] != 0 and codes["algo-2"] != 0, codes
    failure = python_cluster.host("algo-1").failure()
    assert failure.startswith("MPI job failed: rank 1 on algo-2 aborted the job (MPI_Abort, error code 1)"), (
        failure
    )
    assert "RuntimeError: rank 1 on algo-2: failing on purpose" in failure
    assert "rank 1 on algo-2 aborted the job" in python_cluster.host("algo-2").failure()
