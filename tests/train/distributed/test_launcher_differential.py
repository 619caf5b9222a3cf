"""Launcher command lines and environments against the toolkits' own runners: the same /opt/ml
tree goes to sagemaker-training 5.1.4's MasterRunner / TorchDistributedRunner (and to
sagemaker-tensorflow-training's TF_CONFIG builders), and to smc's launchers. Every allowed
difference is named with its reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from trainkit import clean_env, make_job, script, write_json

from supervisor_app.config import load_config
from supervisor_app.config.train import load_train_config
from supervisor_app.train import environment, hyperparams
from supervisor_app.train.cluster import discover
from supervisor_app.train.plan import plan_job
from supervisor_app.train.resources import Resources
from supervisor_app.interpreter import Interpreter
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers import Launcher, choose, tf_config_env
from supervisor_app.train.launchers.mpi_command import EXTRA_EXPORTS, mpirun_command, program_command
from supervisor_app.train.launchers.torchrun import torchrun_command, torchrun_environment

pytestmark = pytest.mark.toolkit
ORACLE = Path(__file__).with_name("toolkit_oracle.py")
PY = Interpreter(argv=("<PY>",), embedded=False, reason="test")


def _oracle(toolkit_train: Path, base: Path, kind: str, *extra: str, env: dict | None = None) -> dict:
    environ = clean_env()
    environ.update(SAGEMAKER_BASE_DIR=str(base), HOME=str(base.parent), **(env or {}))
    python = toolkit_train.parent / "python"
    done = subprocess.run(
        [str(python), str(ORACLE), kind, *extra],
        check=False,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("ORACLE "))
    return json.loads(line.removeprefix("ORACLE "))


def _smc(base: Path, env: dict | None = None):
    config = load_config({"SAGEMAKER_BASE_DIR": str(base), **(env or {})})
    plan = plan_job(load_train_config(config), Resources(num_cpus=1, num_gpus=0, num_neurons=0))
    split = plan.hyperparameters
    cluster = plan.cluster or discover(plan.topology, plan.resources, split.framework)
    return plan, split, plan.topology, cluster


def _job(tmp_path: Path, case: str | None, resource: dict | None, hps: dict, entry: str = "train.py") -> Path:
    base = make_job(tmp_path, case, name="job")
    if resource is not None:
        write_json(base / "input/config/resourceconfig.json", resource)
    write_json(base / "input/config/hyperparameters.json", {k: json.dumps(v) for k, v in hps.items()})
    script(base, entry, "print('hi')\n", mode=0o755)
    return _with_channels(base)


def _with_channels(base: Path) -> Path:
    # The toolkit cannot read a job without inputdataconfig.json; smc treats it as {}.
    if not (base / "input/config/inputdataconfig.json").exists():
        write_json(base / "input/config/inputdataconfig.json", {})
    return base


def _toolkit_python(command: list[str]) -> list[str]:
    return ["<PY>" if part.endswith("/bin/python") else part for part in command]


TWO = {
    "current_host": "algo-1",
    "hosts": ["algo-1", "algo-2"],
    "current_instance_type": "ml.p4d.24xlarge",
    "network_interface_name": "eth0",
}
MPI_CASES = {
    "two_hosts_custom_options_efa": (
        None,
        TWO,
        {
            "sagemaker_program": "train.py",
            "sagemaker_mpi_enabled": True,
            "sagemaker_mpi_num_of_processes_per_host": 2,
            "sagemaker_mpi_custom_mpi_options": "--NCCL_DEBUG WARN -x FOO=1 --verbose",
            "lr": 0.1,
            "name": "a b",
        },
        "train.py",
    ),
    "one_process_per_host_shell_entry": (
        None,
        dict(TWO, current_instance_type="ml.c5.xlarge"),
        {"sagemaker_program": "train.sh", "sagemaker_mpi_enabled": True, "x": "it's; $(here)"},
        "train.sh",
    ),
    "instance_groups_num_processes": ("mpi_groups", None, None, "train.py"),
}


@pytest.mark.parametrize("case", sorted(MPI_CASES))
def test_mpirun_command_is_the_toolkits(case, tmp_path, toolkit_train):
    fixture, resource, hps, entry = MPI_CASES[case]
    base = (
        make_job(tmp_path, fixture, name="job")
        if hps is None
        else _job(tmp_path, fixture, resource, hps, entry)
    )
    if hps is None:
        script(base, entry, "print('hi')\n")
        _with_channels(base)
    creds = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SESSION_TOKEN": "tok"}
    expected = _oracle(toolkit_train, base, "mpi", env=creds)
    assert expected["runner"] == "MasterRunner"

    plan, split, topology, cluster = _smc(base)
    assert choose(split.framework, topology) is Launcher.MPI and cluster.is_master
    assert plan.python_path == (str(base / "code"),)
    env = environment.script_environment(plan, creds)
    kind = Kind.PROGRAM if entry.endswith(".py") else Kind.SHELL
    program = program_command(kind, entry, hyperparams.to_argv(split.user), PY)
    exported = [*(n for n in env if n.startswith("SM_")), *EXTRA_EXPORTS]
    got = mpirun_command(cluster, split.framework, exported, env, program)

    want = _toolkit_python(expected["command"])
    # 1. The toolkit preloads its gethostname() shim (a C extension it ships); smc ships none.
    at = want.index(next(p for p in want if p.startswith("LD_PRELOAD=")))
    assert want[at - 1] == "-x"
    del want[at - 1 : at + 1]
    # 2. smc passes PYTHONPATH and PYTHONUNBUFFERED to every rank, so ranks on other hosts see
    #    the code dir and log at once like the master's ranks do.
    for name in EXTRA_EXPORTS:
        at = got.index(name)
        assert got[at - 1] == "-x"
        del got[at - 1 : at + 1]
    assert got == want


def test_mpi_worker_is_a_worker_in_both(tmp_path, toolkit_train):
    base = _job(
        tmp_path,
        None,
        dict(TWO, current_host="algo-2"),
        {"sagemaker_program": "train.py", "sagemaker_mpi_enabled": True},
    )
    assert _oracle(toolkit_train, base, "mpi")["runner"] == "WorkerRunner"
    _, split, topology, cluster = _smc(base)
    assert choose(split.framework, topology) is Launcher.MPI and not cluster.is_master
    assert cluster.master == "algo-1"


TORCH_CASES = {
    "two_hosts_node_rank_1": (dict(TWO, current_host="algo-2"), {}),
    "one_host_no_multinode_flags": ({"current_host": "algo-1", "hosts": ["algo-1"]}, {}),
    "neuron_compile_override_ppn": (
        dict(TWO, current_instance_type="ml.trn1.32xlarge"),
        {"sagemaker_mpi_num_of_processes_per_host": 3},
    ),
}


@pytest.mark.parametrize("case", sorted(TORCH_CASES))
def test_torchrun_command_and_environment_are_the_toolkits(case, tmp_path, toolkit_train):
    resource, extra = TORCH_CASES[case]
    hps = {"sagemaker_program": "train.py", "sagemaker_torch_distributed_enabled": True, "epochs": 2, **extra}
    base = _job(tmp_path, None, resource, hps)
    env = {"RUN_NEURON_PARALLEL_COMPILE": "1"} if "neuron" in case else {}
    expected = _oracle(toolkit_train, base, "torchrun", env=env)

    _, split, topology, cluster = _smc(base)
    assert choose(split.framework, topology) is Launcher.TORCHRUN
    got = torchrun_command(cluster, Kind.PROGRAM, "train.py", hyperparams.to_argv(split.user), env)
    assert got == expected["command"]
    assert cluster.processes_per_host == expected["processes_per_host"]
    got_env = torchrun_environment(cluster)
    # smc adds MASTER_ADDR/MASTER_PORT, which the PyTorch containers export for this launcher.
    assert got_env.pop("MASTER_ADDR") == cluster.master and got_env.pop("MASTER_PORT") == "7777"
    assert got_env == expected["env"]


def test_torchrun_refuses_packages_like_the_toolkit(tmp_path):
    from supervisor_app.errors import UserCodeError

    base = _job(
        tmp_path, None, TWO, {"sagemaker_program": "pkg", "sagemaker_torch_distributed_enabled": True}
    )
    _, _, _, cluster = _smc(base)
    with pytest.raises(UserCodeError, match="needs a Python script"):
        torchrun_command(cluster, Kind.PACKAGE, "pkg", [], {})


TF_HOSTS = ["algo-1", "algo-2", "algo-3"]


@pytest.mark.parametrize("current", [*TF_HOSTS, "single"])
def test_tf_config_is_the_tensorflow_toolkits(current, tmp_path, toolkit_train, tf_training_py):
    from supervisor_app.train.launchers import tf_config

    hosts = ["algo-1"] if current == "single" else TF_HOSTS
    host = "algo-1" if current == "single" else current
    resource = {"current_host": host, "hosts": hosts}
    hps = {"sagemaker_program": "train.py", "sagemaker_parameter_server_enabled": True}
    base = _job(tmp_path, None, resource, hps)
    expected = _oracle(toolkit_train, base, "tf", str(tf_training_py))

    _, split, topology, _ = _smc(base)
    assert tf_config.render(tf_config.parameter_server(hosts, host)) == expected["worker"]
    assert tf_config.render(tf_config.multi_worker_mirrored(hosts, host)) == expected["mwms"]
    if len(hosts) > 1:
        assert tf_config.render(tf_config.parameter_server(hosts, host, ps_task=True)) == expected["ps"]
        assert tf_config_env(split.framework, topology) == {"TF_CONFIG": expected["worker"]}
    else:
        assert tf_config_env(split.framework, topology) == {}  # the TF toolkit: ps only with > 1 host
