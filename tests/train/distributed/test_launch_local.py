"""The launchers through the frozen binary, on one machine: torchrun (a stand-in on PATH records
what it was given), TF_CONFIG and the parameter-server task (a stand-in tensorflow records it),
and MPI in an image without Open MPI or sshd."""

from __future__ import annotations

import json
import os

from trainkit import failure, hyperparameters, make_job, script, train_env, write_json

FAKE_TORCHRUN = """#!/bin/sh
# Stands in for torch's torchrun: records argv and the launcher's variables.
python3 - "$@" <<'PY'
import json, os, sys
keep = ("MASTER_ADDR", "MASTER_PORT", "NCCL_SOCKET_IFNAME", "NCCL_PROTO", "SM_CURRENT_HOST", "PYTHONPATH")
json.dump({"argv": sys.argv[1:], "env": {k: os.environ.get(k) for k in keep}, "cwd": os.getcwd()},
          open(os.environ["SM_OUTPUT_DATA_DIR"] + "/torchrun.json", "w"))
PY
"""


def _fake_torchrun(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "torchrun").write_text(FAKE_TORCHRUN)
    (bin_dir / "torchrun").chmod(0o755)
    return bin_dir


def test_torchrun_gets_the_toolkits_argv_and_master_variables(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}
    )
    hyperparameters(base, sagemaker_program="train.py", sagemaker_torch_distributed_enabled=True, epochs=2)
    script(base, "train.py", "raise SystemExit('torchrun runs this, not smc')\n")
    bin_dir = _fake_torchrun(tmp_path)
    env = train_env(base, SM_STUDIO_LOCAL_MODE="true", PATH=f"{bin_dir}:/usr/bin:/bin")
    done = smc("train", env=env)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    seen = json.loads((base / "output/data/torchrun.json").read_text())
    assert seen["argv"] == [
        "--nnodes", "2", "--nproc_per_node", "1",
        "--master_addr", "algo-1", "--master_port", "7777", "--node_rank", "1",
        "train.py", "--epochs", "2",
    ]  # fmt: skip
    assert seen["env"] == {
        "MASTER_ADDR": "algo-1",
        "MASTER_PORT": "7777",
        "NCCL_SOCKET_IFNAME": "eth0",
        "NCCL_PROTO": "simple",
        "SM_CURRENT_HOST": "algo-2",
        "PYTHONPATH": str(base / "code"),
    }
    assert seen["cwd"] == str(base / "code")
    assert (base / "output/success").exists()


def test_torchrun_missing_from_the_image_is_a_clear_error(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py", sagemaker_torch_distributed_enabled=True)
    script(base, "train.py", "print('never')\n")
    done = smc("train", env=train_env(base, PATH=str(tmp_path)))
    assert done.returncode == 1
    assert failure(base).startswith("sagemaker_torch_distributed_enabled is set, but torchrun is not on PATH")


def test_parameter_server_jobs_get_tf_config(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json", {"current_host": "algo-2", "hosts": ["algo-1", "algo-2"]}
    )
    hyperparameters(base, sagemaker_program="train.py", sagemaker_parameter_server_enabled=True)
    script(
        base,
        "train.py",
        "import os\nopen(os.environ['SM_OUTPUT_DATA_DIR'] + '/tf_config', 'w').write(os.environ['TF_CONFIG'])\n",
    )
    done = smc("train", env=train_env(base, SM_STUDIO_LOCAL_MODE="true"))
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert (base / "output/data/tf_config").read_text() == (
        '{"cluster": {"master": ["algo-1:2222"], "ps": ["algo-1:2223", "algo-2:2223"], '
        '"worker": ["algo-2:2222"]}, "environment": "cloud", "task": {"index": 0, "type": "worker"}}'
    )


def test_mpi_in_an_image_without_open_mpi_says_which_package_to_install(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py", sagemaker_mpi_enabled=True)
    script(base, "train.py", "print('never')\n")
    done = smc("train", env=train_env(base, PATH=str(tmp_path)))
    assert done.returncode == 3
    text = failure(base)
    assert text.startswith("sagemaker_mpi_enabled is set, but the image lacks"), text
    assert "openmpi-bin" in text and "apt-get install -y --no-install-recommends" in text


FAKE_TENSORFLOW = """
# Stands in for tensorflow: records how smc's parameter-server task builds its server.
import json, os, time

class _ClusterSpec:
    def __init__(self, cluster):
        self.cluster = cluster

class _Server:
    def __init__(self, spec, job_name, task_index, config):
        record = {"cluster": spec.cluster, "job_name": job_name, "task_index": task_index,
                  "config": config, "pid": os.getpid(), "tf_config": os.environ["TF_CONFIG"]}
        with open(os.environ["SM_OUTPUT_DATA_DIR"] + "/ps_server.json", "w") as f:
            json.dump(record, f)

    def join(self):
        time.sleep(3600)

class train:
    ClusterSpec = _ClusterSpec

class distribute:
    Server = _Server

class compat:
    class v1:
        @staticmethod
        def ConfigProto(**kw):
            return kw
"""


def test_parameter_server_task_runs_beside_the_script_and_stops_with_it(smc, tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json", {"current_host": "algo-1", "hosts": ["algo-1", "algo-2"]}
    )
    hyperparameters(base, sagemaker_program="train.py", sagemaker_parameter_server_enabled=True)
    script(
        base,
        "train.py",
        "import os, time\n"
        "out = os.environ['SM_OUTPUT_DATA_DIR']\n"
        "for _ in range(100):\n"
        "    if os.path.exists(out + '/ps_server.json'): break\n"
        "    time.sleep(0.1)\n"
        "open(out + '/tf_config', 'w').write(os.environ['TF_CONFIG'])\n",
    )
    fake = tmp_path / "fake_tf"
    (fake / "tensorflow").mkdir(parents=True)
    (fake / "tensorflow" / "__init__.py").write_text(FAKE_TENSORFLOW)
    done = smc("train", env=train_env(base, SM_STUDIO_LOCAL_MODE="true", PYTHONPATH=str(fake)), timeout=60)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    server = json.loads((base / "output/data/ps_server.json").read_text())
    ps_config = {
        "cluster": {
            "master": ["algo-1:2222"],
            "ps": ["algo-1:2223", "algo-2:2223"],
            "worker": ["algo-2:2222"],
        },
        "environment": "cloud",
        "task": {"index": 0, "type": "ps"},
    }
    assert json.loads(server["tf_config"]) == ps_config
    assert (
        server["cluster"] == ps_config["cluster"] and server["job_name"] == "ps" and server["task_index"] == 0
    )
    assert server["config"] == {"device_count": {"GPU": 0}}
    assert json.loads((base / "output/data/tf_config").read_text())["task"] == {"index": 0, "type": "master"}
    try:
        os.kill(server["pid"], 0)
        alive = True
    except ProcessLookupError:
        alive = False
    assert not alive, "the parameter server outlived the job"
