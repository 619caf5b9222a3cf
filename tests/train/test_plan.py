"""The job's plan, against the source (fast): one precedence rule, one topology, and doctor
planning with train's own plan_job, so the two agree."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor_app.config import load_config
from supervisor_app.config.train import load_train_config
from supervisor_app.doctor import checks_train
from supervisor_app.errors import ConfigError
from supervisor_app.train import environment
from supervisor_app.train.launchers import Launcher
from supervisor_app.train.plan import plan_job
from supervisor_app.train.resources import Resources
from supervisor_app.train.script import plan_script
from tests.train.trainkit import hyperparameters, make_job, script, write_json

HOST = Resources(num_cpus=2, num_gpus=0, num_neurons=0)


def _plan(base: Path, **environ: str):
    config = load_config({"SAGEMAKER_BASE_DIR": str(base), **environ})
    return config, plan_job(load_train_config(config), HOST)


def test_sagemaker_program_beats_the_hyperparameter_for_train_and_doctor(tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="from_hp.py")
    script(base, "from_env.py", "print('hi')\n")
    config, plan = _plan(base, SAGEMAKER_PROGRAM="from_env.py")
    assert plan.entry_point == "from_env.py" and plan.module_name == "from_env"
    env = plan_script(plan).env
    assert env["SM_USER_ENTRY_POINT"] == "from_env.py" and env["SM_MODULE_NAME"] == "from_env"
    doctor_plan, problems = checks_train.plan(config, load_train_config(config))
    assert not problems and doctor_plan is not None and doctor_plan.entry_point == "from_env.py"
    findings = checks_train.check_entry_point(doctor_plan)
    assert findings[0].status == "ok" and "from_env.py" in findings[0].message


def test_submit_directory_hyperparameter_beats_the_environment(tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_submit_directory="s3://bucket/code.tar.gz")
    _, plan = _plan(base, SAGEMAKER_SUBMIT_DIRECTORY="/elsewhere", SAGEMAKER_PROGRAM="train.py")
    assert plan.source == "s3://bucket/code.tar.gz"


def test_sm_training_env_is_rendered_from_the_plans_topology(tmp_path):
    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json",
        {
            "current_host": "algo-3",
            "hosts": ["algo-1", "algo-2", "algo-3"],
            "current_group_name": "train",
            "instance_groups": [
                {"instance_group_name": "data", "hosts": ["algo-1"]},
                {"instance_group_name": "train", "hosts": ["algo-2", "algo-3"]},
            ],
        },
    )
    hyperparameters(base, sagemaker_program="train.py", sagemaker_torch_distributed_enabled=True)
    script(base, "train.py", "print('hi')\n")
    _, plan = _plan(base)
    assert plan.launcher is Launcher.TORCHRUN and plan.cluster is not None
    assert plan.cluster.hosts == ("algo-2", "algo-3") and plan.cluster.master == "algo-2"
    rendered = json.loads(plan_script(plan).env["SM_TRAINING_ENV"])
    assert rendered == json.loads(environment.encode(environment.training_env(plan)))
    assert rendered["master_hostname"] == "algo-2" and rendered["distribution_hosts"] == ["algo-2", "algo-3"]
    assert rendered["is_hetero"] is True and rendered["is_master"] is False


def test_a_framework_module_must_name_a_function(tmp_path):
    base = make_job(tmp_path)
    with pytest.raises(ConfigError, match="package.module:function"):
        _plan(base, SAGEMAKER_TRAINING_MODULE="sagemaker_pytorch_container")


def test_an_image_without_a_job_tree_is_planned_from_its_settings(tmp_path):
    base = tmp_path / "ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "train.sh").write_text("#!/bin/sh\necho hi\n")
    config = load_config({"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_PROGRAM": "train.sh"})
    plan, problems = checks_train.plan(config, None)
    assert not problems and plan is not None
    assert plan.entry_point == "train.sh" and plan.topology.hosts == ("algo-1",)
    assert plan.launcher is Launcher.PROCESS
