"""Hyperparameters: reserved sagemaker_* keys apart from the user's, and the user's as argv.

The rendering reproduces sagemaker-training 5.x exactly (checked by the differential test):
keys sorted by code point, `--key` (`-k` for one character), values through Python's str():
True/False, 1000.0, [1, 'x', True]; dicts as k=v pairs sorted by key; null as "". Every value is
one argv item, so spaces and ';' never split or reach a shell.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

SAGEMAKER_PREFIX = "sagemaker_"
PROGRAM = "sagemaker_program"
SUBMIT_DIRECTORY = "sagemaker_submit_directory"
REGION = "sagemaker_region"
LOG_LEVEL = "sagemaker_container_log_level"
JOB_NAME = "sagemaker_job_name"
S3_OUTPUT = "sagemaker_s3_output"
TUNING_METRIC = "_tuning_objective_metric"
# Keys the platform and the SDK use for the launcher itself: never user arguments, never
# framework parameters (the toolkit's params.SAGEMAKER_HYPERPARAMETERS).
RESERVED = frozenset(
    {
        PROGRAM,
        SUBMIT_DIRECTORY,
        "sagemaker_enable_cloudwatch_metrics",
        REGION,
        LOG_LEVEL,
        JOB_NAME,
        "default_user_module_name",
        TUNING_METRIC,
        S3_OUTPUT,
    }
)


@dataclass(frozen=True)
class SplitHyperparameters:
    user: dict[str, Any]  # become argv, SM_HPS and SM_HP_*
    framework: dict[str, Any]  # other sagemaker_* keys: SM_FRAMEWORK_PARAMS
    launcher: dict[str, Any]  # every sagemaker_* or reserved key, for smc itself


def split(hyperparameters: Mapping[str, Any]) -> SplitHyperparameters:
    user: dict[str, Any] = {}
    launcher: dict[str, Any] = {}
    for key, value in hyperparameters.items():
        if key in RESERVED or key.startswith(SAGEMAKER_PREFIX):
            launcher[key] = value
        else:
            user[key] = value
    framework = {k: v for k, v in launcher.items() if k not in RESERVED}
    return SplitHyperparameters(user=user, framework=framework, launcher=launcher)


def to_argv(user: Mapping[str, Any]) -> list[str]:
    argv: list[str] = []
    for key in sorted(user):
        argv += [option_name(key), render_value(user[key])]
    return argv


def option_name(key: str) -> str:
    name = str(key)
    if not name:
        return ""
    return f"--{name}" if len(name) > 1 else f"-{name}"


def render_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)
