"""Launcher pieces on their own: keys, failure reports, options, peers, processes per host."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path

import pytest

from supervisor_app import logs
from supervisor_app.config.dist import DistConfig
from supervisor_app.errors import BootError, ConfigError
from supervisor_app.train import runner
from supervisor_app.train.cluster import Cluster, discover, topology_of, wait_for_peers
from supervisor_app.train.launchers import ed25519, ssh
from supervisor_app.train.launchers.mpi_command import split_custom_options
from supervisor_app.train.launchers.mpi_job import describe_failure, failed_rank_stderr
from supervisor_app.train.resources import Resources

CLUSTER = Cluster(("algo-1", "algo-2"), "algo-1", "algo-1", "eth0", 2, "ml.c5.xlarge")


def _outcome(stderr: str, code: int = 7, stop: int | None = None) -> runner.Outcome:
    return runner.Outcome(
        exit_code=code, stop_signal=stop, killed_after_grace=False, stderr_tail=stderr.encode()
    )


def test_ed25519_public_key_matches_rfc8032_test_vector_1():
    seed = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
    assert (
        ed25519.public_key(seed).hex() == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )


def test_ed25519_private_file_is_read_by_ssh_keygen(tmp_path):
    seed = bytes(range(32))
    key = tmp_path / "key"
    key.write_text(ed25519.private_file(seed, "smc-mpi"))
    key.chmod(0o600)
    done = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True, text=True, check=True)
    assert done.stdout.split()[:2] == ed25519.public_line(seed, "smc-mpi").split()[:2]


def test_derived_ssh_key_is_the_same_on_every_host_and_changes_with_job_or_secret():
    hosts = ("algo-1", "algo-2")
    assert ssh.derive_seed("", "job", hosts) == ssh.derive_seed("", "job", hosts)
    assert ssh.derive_seed("", "job", hosts) != ssh.derive_seed("", "job-2", hosts)
    assert ssh.derive_seed("", "job", hosts) != ssh.derive_seed("s3cret", "job", hosts)


def test_ssh_files_use_a_provided_key_file(tmp_path):
    key = tmp_path / "mine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    dist = DistConfig(peer_wait_s=1, ssh_port=2222, ssh_key_file=str(key), ssh_secret="", master_lost_s=1)
    files = ssh.prepare(tmp_path / "ssh", dist, "job", ("algo-1",))
    assert files.key_origin == "file"
    authorized = (tmp_path / "ssh/authorized_keys").read_text().split()[:2]
    assert authorized == Path(f"{key}.pub").read_text().split()[:2]
    assert "Port 2222" in files.sshd_config.read_text() and "Port 2222" in files.client_config.read_text()


def test_ssh_keygen_loads_the_images_libcrypto_not_the_bundles(tmp_path, monkeypatch):
    """In the binary, LD_LIBRARY_PATH starts with the unpacked bundle (its own libcrypto.so.3, older
    than what Debian 13's ssh-keygen needs). ssh-keygen must run with the image's library path."""
    key = tmp_path / "mine"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "libcrypto.so.3").write_bytes(b"a library ssh-keygen cannot load")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(bundle))
    monkeypatch.setenv("LD_LIBRARY_PATH_ORIG", "")  # what the bootloader records: none before it
    dist = DistConfig(peer_wait_s=1, ssh_port=2222, ssh_key_file=str(key), ssh_secret="", master_lost_s=1)
    files = ssh.prepare(tmp_path / "ssh", dist, "job", ("algo-1",))
    assert files.key_origin == "file"


def test_a_provided_key_that_is_not_a_key_is_a_config_error(tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("not a key\n")
    dist = DistConfig(peer_wait_s=1, ssh_port=22, ssh_key_file=str(bad), ssh_secret="", master_lost_s=1)
    with pytest.raises(ConfigError, match="SMC_MPI_SSH_KEY_FILE=.*not an unencrypted OpenSSH private key"):
        ssh.prepare(tmp_path / "ssh", dist, "job", ("algo-1",))


MPIRUN_RANK_EXIT = """\
[1,3]<stderr>:rank 3 on algo-2: failing on purpose with code 7
--------------------------------------------------------------------------
mpirun detected that one or more processes exited with non-zero status, thus causing
the job to be terminated. The first process to do so was:

  Process name: [[41195,1],3]
  Exit code:    7
--------------------------------------------------------------------------
"""


def test_failure_names_rank_and_host_from_mpiruns_report():
    cause = describe_failure(_outcome(MPIRUN_RANK_EXIT), CLUSTER)
    assert cause == "MPI job failed: rank 3 on algo-2 exited with code 7 (mpirun exit code 7)"
    assert (
        failed_rank_stderr(MPIRUN_RANK_EXIT.encode())
        == b"[rank 3] rank 3 on algo-2: failing on purpose with code 7"
    )


def test_failure_names_the_rank_that_called_mpi_abort():
    text = (
        "[1,1]<stderr>:RuntimeError: boom\n"
        "MPI_ABORT was invoked on rank 1 in communicator MPI_COMM_WORLD\n  with errorcode 1.\n"
    )
    one_per_host = Cluster(("algo-1", "algo-2"), "algo-1", "algo-1", "eth0", 1, "local")
    assert describe_failure(_outcome(text, 1), one_per_host) == (
        "MPI job failed: rank 1 on algo-2 aborted the job (MPI_Abort, error code 1)"
    )
    assert failed_rank_stderr(text.encode()) == b"[rank 1] RuntimeError: boom"


def test_failure_names_a_rank_killed_by_a_signal():
    text = "mpirun noticed that process rank 2 with PID 0 on node algo-2 exited on signal 9 (Killed).\n"
    described = describe_failure(_outcome(text, 137), CLUSTER)
    assert described.startswith("MPI job failed: rank 2 on algo-2 was killed by SIGKILL (mpirun does not say by whom")
    assert "likely" not in described and "out of memory" not in described


def test_failure_names_the_host_whose_daemon_was_lost():
    text = "ORTE has lost communication with a remote daemon.\n\n  HNP daemon   : [[1,0],0] on node algo-1\n  Remote daemon: [[1,0],1] on node algo-2\n"
    cause = describe_failure(_outcome(text, 1), CLUSTER)
    assert cause.startswith("MPI job failed: mpirun lost contact with host algo-2") and cause.endswith(
        "its ranks 2-3 are gone"
    )


def test_failure_names_the_host_the_master_cannot_log_in_to():
    text = '[algo-1:00009] Warning: could not find environment variable "LD_LIBRARY_PATH"\nroot@algo-2: Permission denied (publickey).\n'
    cause = describe_failure(_outcome(text, 255), CLUSTER)
    assert cause.startswith(
        "MPI job failed: the master algo-1 cannot log in to algo-2 over SSH (Permission denied)"
    )
    assert failed_rank_stderr(text.encode()) == b"root@algo-2: Permission denied (publickey).\n"


def test_failure_of_a_stopped_job_says_who_stopped_it():
    assert describe_failure(_outcome("", 143, stop=15), CLUSTER) == (
        "MPI job stopped: smc on the master algo-1 received SIGTERM"
    )


@pytest.mark.parametrize(
    ("text", "nccl", "rest"),
    [
        ("", "INFO", []),
        ("--NCCL_DEBUG WARN -x FOO=1", "WARN", ["-x", "FOO=1"]),
        ("--NCCL_DEBUG=TRACE --verbose", "TRACE", ["--verbose"]),
    ],
)
def test_custom_mpi_options_override_nccl_debug_and_pass_the_rest(text, nccl, rest):
    assert split_custom_options(text) == (nccl, rest)


def _topology():
    resource_config = {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}
    return topology_of(resource_config, {"sagemaker_mpi_enabled": True})


def _resources(num_gpus: int = 0, num_neurons: int = 0) -> Resources:
    return Resources(num_cpus=1, num_gpus=num_gpus, num_neurons=num_neurons)


@pytest.mark.parametrize(
    ("extra", "framework", "expected"),
    [
        ({}, {}, 1),
        ({"num_gpus": 8}, {}, 8),
        ({"num_neurons": 32}, {}, 32),
        ({"num_gpus": 8}, {"sagemaker_mpi_num_of_processes_per_host": "3"}, 3),
    ],
)
def test_processes_per_host_are_gpus_else_neurons_else_one_unless_overridden(extra, framework, expected):
    cluster = discover(_topology(), _resources(**extra), framework)
    assert cluster.processes_per_host == expected and cluster.master == "algo-1" and not cluster.is_master


def test_processes_per_host_must_be_a_positive_number():
    with pytest.raises(ConfigError, match="sagemaker_mpi_num_of_processes_per_host.*at least 1"):
        discover(_topology(), _resources(), {"sagemaker_mpi_num_of_processes_per_host": "0"})


def test_rank_to_host_follows_map_by_slot():
    assert [CLUSTER.host_of_rank(r) for r in range(5)] == ["algo-1", "algo-1", "algo-2", "algo-2", None]


def test_peer_wait_names_the_peer_that_never_came():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(
        BootError,
        match=rf"never answered on port {closed_port} within 0.5 s: 127.0.0.1 \(Connection refused\)",
    ):
        wait_for_peers(("127.0.0.1",), closed_port, 0.5, logs.get_logger("test"), what="test")
    assert time.monotonic() - started < 3


def test_peer_wait_returns_when_every_peer_answers():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        started = time.monotonic()
        wait_for_peers(
            ("127.0.0.1", "localhost"), server.getsockname()[1], 5, logs.get_logger("test"), what="test"
        )
        assert time.monotonic() - started < 2  # at the first probe of each, not at the 5 s deadline
        server.settimeout(1)
        probes = [server.accept()[0] for _ in range(2)]  # each peer was connected to (raises if not)
        for conn in probes:
            conn.close()


def _doctor(tmp_path, hps: dict, path: str, **environ: str):
    from supervisor_app.config import load_config
    from supervisor_app.config.train import load_train_config
    from supervisor_app.doctor.checks_launchers import check_launchers
    from supervisor_app.train.plan import plan_job
    from supervisor_app.train.resources import Resources

    base = tmp_path / "ml"
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/resourceconfig.json").write_text('{"current_host": "algo-1", "hosts": ["algo-1"]}')
    (base / "input/config/hyperparameters.json").write_text(
        json.dumps({k: json.dumps(v) for k, v in hps.items()})
    )
    config = load_config({"SAGEMAKER_BASE_DIR": str(base), "PATH": path, **environ})
    plan = plan_job(load_train_config(config), Resources(num_cpus=1, num_gpus=0, num_neurons=0))
    return {f.check: f for f in check_launchers(config, plan)}


def test_doctor_names_the_debian_packages_an_mpi_job_lacks(tmp_path):
    findings = _doctor(tmp_path, {"sagemaker_mpi_enabled": True}, str(tmp_path))
    assert findings["mpi_programs"].status == "fail"
    assert "openmpi-bin" in findings["mpi_programs"].message
    assert findings["mpi_ssh_key"].status == "warn"


def test_doctor_is_content_with_open_mpi_sshd_and_a_secret(tmp_path):
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("sshd", "ssh", "mpirun", "orted"):
        (tools / name).write_text("#!/bin/sh\n")
        (tools / name).chmod(0o755)
    findings = _doctor(tmp_path, {"sagemaker_mpi_enabled": True}, str(tools), SMC_MPI_SSH_SECRET="s")
    assert findings["mpi_programs"].status == "ok" and findings["mpi_ssh_key"].status == "ok"


def test_doctor_fails_a_torchrun_job_without_torchrun(tmp_path):
    findings = _doctor(tmp_path, {"sagemaker_torch_distributed_enabled": True}, str(tmp_path))
    assert findings["torchrun"].status == "fail"


def test_doctor_says_nothing_for_single_process_jobs(tmp_path):
    assert _doctor(tmp_path, {"epochs": 1}, str(tmp_path)) == {}
