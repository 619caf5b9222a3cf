"""MPI across real containers: a private Docker network, hosts algo-1..N, each running `smc train`
from examples/mpi (smc-base + openmpi-bin + openssh-server + a C MPI_Allreduce program)."""

from __future__ import annotations

import re
import time

import pytest

pytestmark = [pytest.mark.docker, pytest.mark.slow]

JOB_TIMEOUT_S = 90


def _ranks_ok(log: str) -> dict[int, str]:
    return {
        int(m.group(1)): m.group(2)
        for m in re.finditer(r"allreduce rank=(\d+) size=\d+ host=(\S+) .* ok", log)
    }


def test_mpi_allreduce_sums_across_two_hosts_and_the_model_lands_on_the_master(cluster):
    cluster.start({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2})
    codes = cluster.wait(JOB_TIMEOUT_S)
    master_log = cluster.logs("algo-1")
    assert codes == {"algo-1": 0, "algo-2": 0}, master_log[-3000:] + cluster.logs("algo-2")[-2000:]
    # --tag-output: every rank's lines reach the master's log, whichever host the rank ran on.
    assert _ranks_ok(master_log) == {0: "algo-1", 1: "algo-1", 2: "algo-2", 3: "algo-2"}
    assert "sum=10 expected=10 ok" in master_log
    assert (cluster.host("algo-1").base / "model/allreduce.txt").read_text() == "size=4 sum=10\n"
    assert not (cluster.host("algo-2").base / "model/allreduce.txt").exists()
    for host in cluster.hosts:
        assert (host.base / "output/success").exists() and not (host.base / "output/failure").exists()
    worker_log = cluster.logs("algo-2")
    assert '"event":"mpi_outcome_received"' in worker_log and '"exit_code":0' in worker_log
    # smc answers sshd's greeting when it probes the port: no noise from every probe.
    assert "kex_exchange_identification" not in master_log + worker_log


def test_mpi_allreduce_across_three_hosts_one_process_each(cluster):
    cluster.size = 3
    cluster.start({"sagemaker_mpi_enabled": True})
    codes = cluster.wait(JOB_TIMEOUT_S)
    master_log = cluster.logs("algo-1")
    assert codes == {"algo-1": 0, "algo-2": 0, "algo-3": 0}, master_log[-3000:]
    assert _ranks_ok(master_log) == {0: "algo-1", 1: "algo-2", 2: "algo-3"}
    assert "--host" in master_log and "algo-1,algo-2,algo-3" in master_log  # no :1 slots, as the toolkit
    assert (cluster.host("algo-1").base / "model/allreduce.txt").read_text() == "size=3 sum=6\n"


def test_mpi_failing_rank_fails_every_host_and_names_host_and_rank(cluster):
    cluster.start(
        {
            "sagemaker_mpi_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
            "fail-rank": 3,
            "exit-code": 7,
        }
    )
    codes = cluster.wait(JOB_TIMEOUT_S)
    assert codes["algo-1"] != 0 and codes["algo-2"] != 0, codes
    master_failure = cluster.host("algo-1").failure()
    assert master_failure.startswith("MPI job failed: rank 3 on algo-2 exited with code 7"), master_failure
    assert "failing on purpose" in master_failure  # the rank's own stderr, tagged [1,3]
    worker_failure = cluster.host("algo-2").failure()
    assert "rank 3 on algo-2 exited with code 7" in worker_failure
    assert "reported by the master algo-1" in worker_failure
    assert not (cluster.host("algo-1").base / "output/success").exists()


def test_mpi_killed_worker_ends_the_job_with_a_clear_failure(cluster):
    cluster.start({"sagemaker_mpi_enabled": True, "sleep-s": 120})
    cluster.wait_for_log("algo-1", "first_line rank=1 host=algo-2", 60)
    killed_at = time.monotonic()
    cluster.docker_kill("algo-2")
    codes = cluster.wait(45)
    ended_s = time.monotonic() - killed_at
    assert codes["algo-1"] != 0
    assert ended_s < 40, f"the master took {ended_s:.0f} s to notice"
    failure = cluster.host("algo-1").failure()
    assert failure.startswith("MPI job failed:") and "algo-2" in failure, failure


def test_mpi_docker_stop_on_the_master_stops_the_whole_job(cluster):
    cluster.start({"sagemaker_mpi_enabled": True, "sleep-s": 120})
    cluster.wait_for_log("algo-1", "first_line rank=1 host=algo-2", 60)
    stopped_at = time.monotonic()
    cluster.docker_stop("algo-1", grace_s=10)
    codes = cluster.wait(30)
    assert codes["algo-1"] == 143, codes  # SIGTERM handled in time: 128 + 15, not SIGKILL's 137
    assert codes["algo-2"] != 0, codes
    assert time.monotonic() - stopped_at < 25
    assert (
        cluster.host("algo-1")
        .failure()
        .startswith("MPI job stopped: smc on the master algo-1 received SIGTERM")
    )
    assert "MPI job stopped" in cluster.host("algo-2").failure()


def test_mpi_worker_gives_up_when_the_master_vanishes(cluster):
    cluster.start({"sagemaker_mpi_enabled": True, "sleep-s": 120}, env={"SMC_MPI_MASTER_LOST_SECONDS": "3"})
    cluster.wait_for_log("algo-1", "first_line rank=1 host=algo-2", 60)
    cluster.docker_kill("algo-1")
    codes = cluster.wait(30)
    assert codes["algo-2"] == 1, codes
    failure = cluster.host("algo-2").failure()
    assert failure.startswith("MPI job lost: the master algo-1 stopped answering on port 22"), failure


def test_mpi_worker_names_the_master_that_never_came(cluster):
    cluster.start({"sagemaker_mpi_enabled": True}, env={"SMC_PEER_WAIT_SECONDS": "2"}, only=["algo-2"])
    codes = cluster.wait(30)
    assert codes == {"algo-2": 3}  # BootError
    failure = cluster.host("algo-2").failure()
    assert failure.startswith(
        "peer host(s) never answered on port 22 within 2 s: algo-1 (name does not resolve)"
    ), failure
    assert '"event":"peer_waiting"' in cluster.logs("algo-2")


def test_mpi_hosts_without_a_shared_key_fail_naming_the_host(cluster):
    cluster.start(
        {"sagemaker_mpi_enabled": True},
        env={"SMC_MPI_MASTER_LOST_SECONDS": "2"},
        host_env={"algo-2": {"SMC_MPI_SSH_SECRET": "not-the-masters"}},
    )
    codes = cluster.wait(JOB_TIMEOUT_S)
    assert codes["algo-1"] != 0 and codes["algo-2"] != 0, codes
    assert (
        cluster.host("algo-1")
        .failure()
        .startswith("MPI job failed: the master algo-1 cannot log in to algo-2 over SSH (Permission denied)")
    )
    # The master could not tell it either; the worker notices its master is gone.
    assert cluster.host("algo-2").failure().startswith("MPI job lost: the master algo-1 stopped answering")


def test_mpi_works_when_container_hostnames_are_not_the_job_host_names(cluster):
    # On SageMaker gethostname() is not algo-N; mpirun must still treat algo-1 as itself.
    cluster.ec2_hostnames = True
    cluster.start({"sagemaker_mpi_enabled": True, "sagemaker_mpi_num_of_processes_per_host": 2})
    codes = cluster.wait(JOB_TIMEOUT_S)
    log = cluster.logs("algo-1")
    assert codes == {"algo-1": 0, "algo-2": 0}, log[-3000:]
    assert _ranks_ok(log) == {0: "ip-10-0-0-1", 1: "ip-10-0-0-1", 2: "ip-10-0-0-2", 3: "ip-10-0-0-2"}
