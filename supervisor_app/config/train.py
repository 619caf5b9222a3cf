"""`smc train` settings and the frozen TrainConfig: the environment, plus the job's config files
as config/job_files.py reads and checks them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from supervisor_app.config.archive import DEFAULT_MAX_BYTES, DEFAULT_MAX_FILES, ArchiveLimits, parse_bytes
from supervisor_app.config.core import Config
from supervisor_app.config.job_files import (
    check_channels,
    check_resource_config,
    decode_hyperparameters,
    read_json_object,
)
from supervisor_app.config.settings import (
    Setting,
    parse_bool,
    parse_positive_int,
    parse_seconds,
    parse_str,
    read_settings,
)
from supervisor_app.paths import Layout

TRAIN_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "program",
        ("SAGEMAKER_PROGRAM",),
        parse_str,
        None,
        "Entry point in the code dir (train.py, train.sh, any executable); beats the "
        "`sagemaker_program` hyperparameter, as in sagemaker-training.",
        "train",
    ),
    Setting(
        "submit_directory",
        ("SAGEMAKER_SUBMIT_DIRECTORY",),
        parse_str,
        None,
        "Where the code comes from when /opt/ml/code is empty: a directory, a tar.gz (path or file://) "
        "or s3://bucket/key.tar.gz. The `sagemaker_submit_directory` hyperparameter beats it.",
        "train",
    ),
    Setting(
        "stop_grace_s",
        ("SMC_STOP_GRACE_SECONDS",),
        parse_seconds,
        30.0,
        "Seconds between forwarding SIGTERM/SIGINT to the training script's process group and "
        "SIGKILL. Keep it below SageMaker's 120 s stop window so smc can write the failure file.",
        "train",
    ),
    Setting(
        "host_wait_s",
        ("SMC_HOST_WAIT_SECONDS",),
        parse_seconds,
        900.0,
        "Multi-host jobs: how long to wait for every host in resourceconfig.json to resolve in DNS "
        "before starting the script (sagemaker-training waits up to 15 minutes).",
        "train",
    ),
    Setting(
        "studio_local_mode",
        ("SM_STUDIO_LOCAL_MODE",),
        parse_bool,
        False,
        "`true` skips the DNS wait for the hosts (SageMaker Studio local mode), as in sagemaker-training.",
        "train",
    ),
    Setting(
        "framework_module",
        ("SAGEMAKER_TRAINING_MODULE",),
        parse_str,
        None,
        "Framework launcher `pkg.mod:fn` of framework images; exported as SM_FRAMEWORK_MODULE.",
        "train",
    ),
    Setting(
        "job_name",
        ("TRAINING_JOB_NAME",),
        parse_str,
        None,
        "Set by SageMaker; `job_name` in SM_TRAINING_ENV.",
        "train",
    ),
    Setting(
        "region",
        ("AWS_REGION", "AWS_DEFAULT_REGION"),
        parse_str,
        "",
        "AWS region for SAGEMAKER_REGION (after the `sagemaker_region` hyperparameter) and for S3.",
        "train",
    ),
    Setting(
        "max_archive_bytes",
        ("SMC_MAX_ARCHIVE_BYTES",),
        parse_bytes,
        DEFAULT_MAX_BYTES,
        "Most bytes a submit-directory archive may expand to (its files added up); a larger one is refused "
        "before anything is written. K/M/G/T suffixes (binary), e.g. `16G`.",
        "train",
    ),
    Setting(
        "max_archive_files",
        ("SMC_MAX_ARCHIVE_FILES",),
        parse_positive_int,
        DEFAULT_MAX_FILES,
        "Most members (files, directories, links) a submit-directory archive may have.",
        "train",
    ),
    Setting(
        "mp_parameters",
        ("SM_HP_MP_PARAMETERS",),
        parse_str,
        None,
        "Model-parallel parameters; only decides `is_modelparallel_enabled` in SM_TRAINING_ENV.",
        "train",
    ),
)

S3_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "endpoint_url",
        ("AWS_ENDPOINT_URL_S3", "S3_ENDPOINT_URL", "AWS_ENDPOINT_URL"),
        parse_str,
        "",
        "S3 endpoint for an s3:// submit directory (path-style requests), e.g. a local S3-compatible "
        "server. Default: https://BUCKET.s3.REGION.amazonaws.com.",
        "train-s3",
    ),
    Setting(
        "access_key_id", ("AWS_ACCESS_KEY_ID",), parse_str, "", "S3 credentials, first choice.", "train-s3"
    ),
    Setting("secret_access_key", ("AWS_SECRET_ACCESS_KEY",), parse_str, "", "S3 credentials.", "train-s3"),
    Setting(
        "session_token", ("AWS_SESSION_TOKEN",), parse_str, "", "S3 credentials (temporary).", "train-s3"
    ),
    Setting(
        "container_credentials_relative_uri",
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",),
        parse_str,
        "",
        "Container credential endpoint path on 169.254.170.2 (second choice for S3 credentials).",
        "train-s3",
    ),
    Setting(
        "container_credentials_full_uri",
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI",),
        parse_str,
        "",
        "Full URL of a container credential endpoint.",
        "train-s3",
    ),
    Setting(
        "container_authorization_token",
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN",),
        parse_str,
        "",
        "Authorization header for the container credential endpoint.",
        "train-s3",
    ),
    Setting(
        "container_authorization_token_file",
        ("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",),
        parse_str,
        "",
        "File holding that header.",
        "train-s3",
    ),
    Setting(
        "imds_disabled",
        ("AWS_EC2_METADATA_DISABLED",),
        parse_bool,
        False,
        "`true`: never ask the instance metadata service (IMDSv2, the last choice) for credentials.",
        "train-s3",
    ),
    Setting(
        "imds_endpoint",
        ("AWS_EC2_METADATA_SERVICE_ENDPOINT",),
        parse_str,
        "http://169.254.169.254",
        "Instance metadata service address.",
        "train-s3",
    ),
)

@dataclass(frozen=True)
class S3Config:
    endpoint_url: str
    access_key_id: str
    secret_access_key: str
    session_token: str
    container_credentials_relative_uri: str
    container_credentials_full_uri: str
    container_authorization_token: str
    container_authorization_token_file: str
    imds_disabled: bool
    imds_endpoint: str
    region: str


@dataclass(frozen=True)
class TrainConfig:
    layout: Layout
    prefix: Path
    tmp_dir: Path
    environ: Mapping[str, str]
    log_level: int
    program: str | None
    submit_directory: str | None
    python: str
    stop_grace_s: float
    host_wait_s: float
    studio_local_mode: bool
    framework_module: str | None
    job_name: str | None
    region: str
    mp_parameters: str | None
    hyperparameters: Mapping[str, Any]  # decoded, reserved sagemaker_* keys included
    not_string_keys: tuple[str, ...]  # hyperparameters given as JSON values, not strings
    undecoded_keys: tuple[str, ...]  # hyperparameters kept raw: not JSON
    resource_config: Mapping[str, Any]
    input_data_config: Mapping[str, Any]
    hyperparameters_file_found: bool
    s3: S3Config
    max_archive_bytes: int
    max_archive_files: int

    @property
    def archive_limits(self) -> ArchiveLimits:
        return ArchiveLimits(self.max_archive_bytes, self.max_archive_files)


# What an image without a job tree is planned as (smc doctor at build time): one local host.
IMAGE_ONLY_RESOURCE_CONFIG = {"current_host": "algo-1", "hosts": ["algo-1"]}


def load_train_config(config: Config, job_files: bool = True) -> TrainConfig:
    """job_files=False: the settings alone, as if the job had no hyperparameters and one host."""
    values = read_settings(TRAIN_SETTINGS, config.environ)
    s3_values = read_settings(S3_SETTINGS, config.environ)
    layout = config.layout
    raw_hps: dict[str, Any] = {}
    hps_found = False
    resource_config: dict[str, Any] = dict(IMAGE_ONLY_RESOURCE_CONFIG)
    input_data_config: dict[str, Any] = {}
    if job_files:
        raw_hps, hps_found = read_json_object(layout.hyperparameters_file, required=False)
        resource_data, _ = read_json_object(layout.resource_config_file, required=True)
        resource_config = check_resource_config(layout.resource_config_file, resource_data)
        input_data_config, _ = read_json_object(layout.input_data_config_file, required=False)
        check_channels(layout, input_data_config)
    hyperparameters, not_strings, undecoded = decode_hyperparameters(raw_hps)
    return TrainConfig(
        layout=layout,
        prefix=config.prefix,
        tmp_dir=config.tmp_dir,
        environ=config.environ,
        log_level=config.log_level,
        python=config.python,
        hyperparameters=MappingProxyType(hyperparameters),
        not_string_keys=tuple(not_strings),
        undecoded_keys=tuple(undecoded),
        resource_config=MappingProxyType(resource_config),
        input_data_config=MappingProxyType(input_data_config),
        hyperparameters_file_found=hps_found,
        s3=S3Config(region=values["region"], **s3_values),
        **values,
    )
