"""The environment of the training script: every variable sagemaker-training 5.x exports,
rendered from the job's plan.

Names are SM_ + the key upper-cased; values are strings as they are, "" for null, and compact
sorted ASCII JSON for everything else (numbers, booleans, lists, objects). SM_TRAINING_ENV holds
every property of the toolkit's Environment object. The differential test compares all of it
with the real toolkit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from supervisor_app.train import hyperparams
from supervisor_app.train.plan import TrainPlan

DEFAULT_LOG_LEVEL = 20


def training_env(plan: TrainPlan) -> dict[str, Any]:
    """The toolkit's Environment as a dict (SM_TRAINING_ENV), keyed by its property names."""
    config = plan.train
    layout = config.layout
    split = plan.hyperparameters
    top = plan.topology
    resources = plan.resources
    mp = config.mp_parameters
    return {
        "additional_framework_parameters": split.framework,
        "channel_input_dirs": {name: str(layout.channel_dir(name)) for name in config.input_data_config},
        "current_host": top.current_host,
        "current_instance_group": top.current_group,
        "current_instance_group_hosts": top.current_group_hosts,
        "current_instance_type": top.instance_type,
        "distribution_hosts": list(top.distribution_hosts),
        "distribution_instance_groups": top.distribution_groups,
        "framework_module": config.framework_module,
        "hosts": list(top.hosts),
        "hyperparameters": split.user,
        "input_config_dir": str(layout.input_config_dir),
        "input_data_config": dict(config.input_data_config),
        "input_dir": str(layout.input_dir),
        "instance_groups": list(top.group_names),
        "instance_groups_dict": dict(top.groups),
        "is_hetero": len(top.group_names) > 1,
        "is_master": top.current_host == top.master,
        # The toolkit's expression: None when unset, else whether it is a non-empty object.
        "is_modelparallel_enabled": None if mp is None else (bool(mp) and mp != "{}"),
        "is_smddpmprun_installed": resources.smddpmprun_installed,
        "is_smddprun_installed": resources.smddprun_installed,
        "job_name": config.job_name,
        "log_level": split.launcher.get(hyperparams.LOG_LEVEL, DEFAULT_LOG_LEVEL),
        "master_hostname": top.master,
        "model_dir": str(layout.model_dir),
        "module_dir": plan.source,
        "module_name": plan.module_name,
        "network_interface_name": top.network_interface,
        "num_cpus": resources.num_cpus,
        "num_gpus": resources.num_gpus,
        "num_neurons": resources.num_neurons,
        "output_data_dir": str(layout.output_data_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_intermediate_dir),
        "resource_config": dict(config.resource_config),
        "topology": top.topology,
        "user_entry_point": plan.entry_point,
    }


def sm_variables(plan: TrainPlan) -> dict[str, str]:
    """Every SM_* variable, in the toolkit's order (it only matters for the banner)."""
    split = plan.hyperparameters
    env = training_env(plan)
    values: dict[str, Any] = {
        "hosts": env["hosts"],
        "network_interface_name": env["network_interface_name"],
        "hps": split.user,
        "user_entry_point": env["user_entry_point"],
        "framework_params": split.framework,
        "resource_config": env["resource_config"],
        "input_data_config": env["input_data_config"],
        "output_data_dir": env["output_data_dir"],
        "channels": sorted(env["channel_input_dirs"]),
        "current_host": env["current_host"],
        "current_instance_type": env["current_instance_type"],
        "current_instance_group": env["current_instance_group"],
        "current_instance_group_hosts": env["current_instance_group_hosts"],
        "instance_groups": env["instance_groups"],
        "instance_groups_dict": env["instance_groups_dict"],
        "distribution_instance_groups": env["distribution_instance_groups"],
        "is_hetero": env["is_hetero"],
        "module_name": env["module_name"],
        "log_level": env["log_level"],
        "framework_module": env["framework_module"],
        "input_dir": env["input_dir"],
        "input_config_dir": env["input_config_dir"],
        "output_dir": env["output_dir"],
        "num_cpus": env["num_cpus"],
        "num_gpus": env["num_gpus"],
        "num_neurons": env["num_neurons"],
        "model_dir": env["model_dir"],
        "module_dir": env["module_dir"],
        "training_env": env,
        "user_args": list(plan.user_args),
        "output_intermediate_dir": env["output_intermediate_dir"],
    }
    if env["topology"]:
        values["topology"] = env["topology"]
    for name, path in env["channel_input_dirs"].items():
        values[f"channel_{name}"] = path
    for key, value in split.user.items():
        values[f"hp_{key}"] = value
    return {f"SM_{str(key).upper()}": encode(value) for key, value in values.items()}


def encode(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def script_environment(plan: TrainPlan, base: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of the script: the container's, then the toolkit's variables."""
    config, split = plan.train, plan.hyperparameters
    env = dict(base)
    env.update(sm_variables(plan))
    env["SAGEMAKER_JOB_NAME"] = str(split.launcher.get(hyperparams.JOB_NAME, ""))
    env["CURRENT_HOST"] = str(config.resource_config["current_host"])
    region = split.launcher.get(hyperparams.REGION, config.region)
    env["SAGEMAKER_REGION"] = str(region or "")
    env["PYTHONPATH"] = os.pathsep.join(plan.python_path)
    # Metric regexes read the log as it is written; block-buffered pipes would delay it.
    env["PYTHONUNBUFFERED"] = "1"
    return valid_for_exec(env)


def valid_for_exec(env: Mapping[str, str]) -> dict[str, str]:
    """execve refuses names with '=' or NUL and values with NUL (e.g. a hyperparameter named a=b)."""
    return {k: v for k, v in env.items() if k and "=" not in k and "\0" not in k and "\0" not in v}
