"""The environment of the training script: every variable sagemaker-training 5.x exports.

Names are SM_ + the key upper-cased; values are strings as they are, "" for null, and compact
sorted ASCII JSON for everything else (numbers, booleans, lists, objects). SM_TRAINING_ENV holds
every property of the toolkit's Environment object. The differential test compares all of it
with the real toolkit.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor_app.config.train import TrainConfig
from supervisor_app.train import hyperparams
from supervisor_app.train.hyperparams import SplitHyperparameters

DEFAULT_LOG_LEVEL = 20
DEFAULT_INSTANCE_TYPE = "local"
DEFAULT_INSTANCE_GROUP = "homogeneousCluster"
DEFAULT_INTERFACE = "eth0"
# Framework parameters that make the current instance group a distributed one.
_DISTRIBUTION_FLAGS = (
    "sagemaker_mpi_enabled",
    "sagemaker_parameter_server_enabled",
    "sagemaker_distributed_dataparallel_enabled",
    "sagemaker_pytorch_ddp_enabled",
    "sagemaker_pytorch_xla_multi_worker_enabled",
    "sagemaker_multi_worker_mirrored_strategy_enabled",
    "sagemaker_torch_distributed_enabled",
)


@dataclass(frozen=True)
class Resources:
    num_cpus: int
    num_gpus: int
    num_neurons: int
    smddprun_installed: bool = False
    smddpmprun_installed: bool = False


def user_entry_point(config: TrainConfig, split: SplitHyperparameters) -> str | None:
    """SAGEMAKER_PROGRAM beats the sagemaker_program hyperparameter."""
    if config.program:
        return config.program
    value = split.launcher.get(hyperparams.PROGRAM)
    return None if value is None else str(value)


def module_dir(config: TrainConfig, split: SplitHyperparameters) -> str:
    """The sagemaker_submit_directory hyperparameter, else SAGEMAKER_SUBMIT_DIRECTORY, else the code dir."""
    value = split.launcher.get(hyperparams.SUBMIT_DIRECTORY)
    if value is not None:
        return str(value)
    return config.submit_directory or str(config.layout.code_dir)


def training_env(config: TrainConfig, split: SplitHyperparameters, resources: Resources) -> dict[str, Any]:
    """The toolkit's Environment as a dict (SM_TRAINING_ENV), keyed by its property names."""
    layout = config.layout
    rc = dict(config.resource_config)
    hosts = list(rc["hosts"])
    current_host = rc["current_host"]
    current_group = rc.get("current_group_name", DEFAULT_INSTANCE_GROUP)
    groups_config = rc.get("instance_groups", [])
    instance_groups = [g["instance_group_name"] for g in groups_config]
    groups_dict = {g["instance_group_name"]: g for g in groups_config}
    current_group_hosts = groups_dict.get(current_group, {}).get("hosts", [])
    distribution_groups = split.framework.get("sagemaker_distribution_instance_groups")
    if distribution_groups is None:
        enabled = any(split.framework.get(flag, False) for flag in _DISTRIBUTION_FLAGS)
        distribution_groups = [current_group] if enabled else []
    if groups_config:
        distribution_hosts = [
            h for g in groups_config if g["instance_group_name"] in distribution_groups for h in g["hosts"]
        ]
    else:
        distribution_hosts = list(hosts)
    master = distribution_hosts[0] if distribution_hosts else hosts[0]
    entry = user_entry_point(config, split)
    module_name = config.program if config.program else str(split.launcher.get(hyperparams.PROGRAM))
    module_name = module_name.removesuffix(".py")
    mp = config.mp_parameters
    return {
        "additional_framework_parameters": split.framework,
        "channel_input_dirs": {name: str(layout.channel_dir(name)) for name in config.input_data_config},
        "current_host": current_host,
        "current_instance_group": current_group,
        "current_instance_group_hosts": current_group_hosts,
        "current_instance_type": rc.get("current_instance_type", DEFAULT_INSTANCE_TYPE),
        "distribution_hosts": distribution_hosts,
        "distribution_instance_groups": distribution_groups,
        "framework_module": config.framework_module,
        "hosts": hosts,
        "hyperparameters": split.user,
        "input_config_dir": str(layout.input_config_dir),
        "input_data_config": dict(config.input_data_config),
        "input_dir": str(layout.input_dir),
        "instance_groups": instance_groups,
        "instance_groups_dict": groups_dict,
        "is_hetero": len(instance_groups) > 1,
        "is_master": current_host == master,
        # The toolkit's expression: None when unset, else whether it is a non-empty object.
        "is_modelparallel_enabled": None if mp is None else (bool(mp) and mp != "{}"),
        "is_smddpmprun_installed": resources.smddpmprun_installed,
        "is_smddprun_installed": resources.smddprun_installed,
        "job_name": config.job_name,
        "log_level": split.launcher.get(hyperparams.LOG_LEVEL, DEFAULT_LOG_LEVEL),
        "master_hostname": master,
        "model_dir": str(layout.model_dir),
        "module_dir": module_dir(config, split),
        "module_name": module_name,
        "network_interface_name": rc.get("network_interface_name", DEFAULT_INTERFACE),
        "num_cpus": resources.num_cpus,
        "num_gpus": resources.num_gpus,
        "num_neurons": resources.num_neurons,
        "output_data_dir": str(layout.output_data_dir),
        "output_dir": str(layout.output_dir),
        "output_intermediate_dir": str(layout.output_intermediate_dir),
        "resource_config": rc,
        "topology": rc.get("topology", []),
        "user_entry_point": entry,
    }


def sm_variables(config: TrainConfig, split: SplitHyperparameters, resources: Resources) -> dict[str, str]:
    """Every SM_* variable, in the toolkit's order (it only matters for the banner)."""
    env = training_env(config, split, resources)
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
        "user_args": hyperparams.to_argv(split.user),
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


def script_environment(
    base: Mapping[str, str],
    config: TrainConfig,
    split: SplitHyperparameters,
    resources: Resources,
    python_path: list[str],
) -> dict[str, str]:
    """The whole environment of the script: the container's, then the toolkit's variables."""
    env = dict(base)
    env.update(sm_variables(config, split, resources))
    env["SAGEMAKER_JOB_NAME"] = str(split.launcher.get(hyperparams.JOB_NAME, ""))
    env["CURRENT_HOST"] = str(config.resource_config["current_host"])
    region = split.launcher.get(hyperparams.REGION, config.region)
    env["SAGEMAKER_REGION"] = str(region or "")
    env["PYTHONPATH"] = os.pathsep.join(python_path)
    # Metric regexes read the log as it is written; block-buffered pipes would delay it.
    env["PYTHONUNBUFFERED"] = "1"
    return valid_for_exec(env)


def valid_for_exec(env: Mapping[str, str]) -> dict[str, str]:
    """execve refuses names with '=' or NUL and values with NUL (e.g. a hyperparameter named a=b)."""
    return {k: v for k, v in env.items() if k and "=" not in k and "\0" not in k and "\0" not in v}
