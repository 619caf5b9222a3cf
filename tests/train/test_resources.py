"""GPU, Neuron and CPU counts, the host DNS wait, and the interpreter fallback, through the binary."""

from __future__ import annotations

import json
import os
import shutil
import sys

import pytest
from trainkit import failure, log_events, make_job, script, train_env, write_json

from tests.stand_ins import NEURON_LS_ARGS, NVIDIA_SMI_TRAIN_ARGS, write_tool

DUMP = "import json, os\nprint('SEEN', json.dumps({k: v for k, v in os.environ.items() if k.startswith('SM_NUM')}))\n"


def _seen(stdout: str) -> dict:
    line = next(line for line in stdout.splitlines() if line.startswith("SEEN "))
    return json.loads(line[5:])


def test_gpus_and_neuron_cores_are_counted_with_the_vendor_tools(smc, tmp_path):
    tools = tmp_path / "bin"
    tools.mkdir()
    # Stand-ins (tests/stand_ins.py: no GPU or Neuron device here) that answer only smc's queries.
    write_tool(tools / "nvidia-smi", NVIDIA_SMI_TRAIN_ARGS,
               "echo 'GPU 0: Tesla V100 (UUID: GPU-1)'\necho 'GPU 1: Tesla V100 (UUID: GPU-2)'")
    write_tool(tools / "neuron-ls", NEURON_LS_ARGS, """echo '[{"nc_count": 2}, {"nc_count": 2}]'""")
    base = make_job(tmp_path)
    script(base, "train.py", DUMP)
    env = train_env(base, SAGEMAKER_PROGRAM="train.py", PATH=f"{tools}:{os.environ['PATH']}")
    done = smc("train", env=env)
    assert done.returncode == 0, done.stderr
    seen = _seen(done.stdout)
    assert seen["SM_NUM_GPUS"] == "2" and seen["SM_NUM_NEURONS"] == "4"


def test_no_gpu_tools_means_zero(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", DUMP)
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", PATH="/usr/bin:/bin"))
    assert done.returncode == 0, done.stderr
    assert _seen(done.stdout)["SM_NUM_GPUS"] == "0" and _seen(done.stdout)["SM_NUM_NEURONS"] == "0"


@pytest.mark.skipif(shutil.which("taskset") is None, reason="taskset (util-linux) is required")
def test_cpu_count_follows_the_cpus_the_job_may_use(smc, smc_binary, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", DUMP)
    env = train_env(base, SAGEMAKER_PROGRAM="train.py")
    done = smc("train", env=env)
    assert _seen(done.stdout)["SM_NUM_CPUS"] == str(len(os.sched_getaffinity(0)))
    import subprocess

    from trainkit import clean_env

    full = clean_env()
    full.update(env)
    pinned = subprocess.run(
        ["taskset", "-c", "0", str(smc_binary), "train"],
        env=full,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert pinned.returncode == 0, pinned.stderr
    assert _seen(pinned.stdout)["SM_NUM_CPUS"] == "1"


def test_multi_host_job_waits_for_dns_then_fails_with_a_clear_message(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json",
        {"current_host": "algo-1", "hosts": ["localhost", "algo-smc-unresolvable.invalid"]},
    )
    script(base, "train.py", "print('ran')\n")
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", SMC_HOST_WAIT_SECONDS="1"))
    assert done.returncode == 3
    assert failure(base).startswith(
        "host 'algo-smc-unresolvable.invalid' of resourceconfig.json does not resolve after 1 s"
    )
    assert any(e["event"] == "host_not_resolvable_yet" for e in log_events(done.stdout))
    assert "ran" not in done.stdout


def test_multi_host_job_with_resolvable_hosts_runs(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json",
        {"current_host": "localhost", "hosts": ["localhost", "127.0.0.1"]},
    )
    script(base, "train.py", "print('ran')\n")
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py"))
    assert done.returncode == 0, done.stderr
    assert "ran" in done.stdout


def test_without_python3_on_path_the_embedded_interpreter_runs_py(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", "import sys\nprint('frozen' if getattr(sys, 'frozen', False) else 'plain')\n")
    empty = tmp_path / "emptybin"
    empty.mkdir()
    env = train_env(base, SAGEMAKER_PROGRAM="train.py", PATH=str(empty), SMC_PREFIX=str(tmp_path / "prefix"))
    del env["SMC_PYTHON"]
    done = smc("train", env=env)
    assert done.returncode == 0, done.stderr
    assert "frozen" in done.stdout.splitlines()


def test_smc_python_that_does_not_exist_is_a_config_error(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", "print('ran')\n")
    done = smc("train", env=train_env(base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON="/no/python9"))
    assert done.returncode == 5
    assert failure(base).startswith("SMC_PYTHON='/no/python9' is not an executable file or a command on PATH")


def test_log_level_hyperparameter_quiets_smc_lines(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/hyperparameters.json",
        {"sagemaker_program": json.dumps("train.py"), "sagemaker_container_log_level": "40"},
    )
    script(base, "train.py", "print('ran')\n")
    done = smc("train", env=train_env(base))
    assert done.returncode == 0
    assert [line for line in done.stdout.splitlines() if line.startswith("{")] == []
    assert "ran" in done.stdout
    assert sys.executable  # the script ran with the test's interpreter (SMC_PYTHON)


def test_framework_module_is_called_with_the_image_python(smc, tmp_path):
    package = tmp_path / "site" / "fwpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "training.py").write_text(
        "import os, sys\ndef main():\n    print('framework main', os.environ['SM_HPS'], os.getcwd())\n    sys.exit(0)\n"
    )
    base = make_job(tmp_path)
    write_json(
        base / "input/config/hyperparameters.json",
        {"epochs": "2", "sagemaker_program": json.dumps("train.py")},
    )
    done = smc(
        "train",
        env=train_env(
            base, SAGEMAKER_TRAINING_MODULE="fwpkg.training:main", PYTHONPATH=str(tmp_path / "site")
        ),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f'framework main {{"epochs":2}} {base}/code' in done.stdout


def test_mpi_jobs_without_open_mpi_fail_with_a_clear_message(smc, tmp_path):
    # MPI jobs are launched by smc (issue 6, tests/train/distributed); without Open MPI and sshd
    # in the image the job stops before the script, naming the Debian packages to install.
    base = make_job(tmp_path)
    write_json(
        base / "input/config/hyperparameters.json",
        {"sagemaker_program": json.dumps("train.py"), "sagemaker_mpi_enabled": "true"},
    )
    script(base, "train.py", "print('ran')\n")
    done = smc("train", env=train_env(base, PATH=str(tmp_path)))
    assert done.returncode == 3
    assert failure(base).startswith("sagemaker_mpi_enabled is set, but the image lacks")
