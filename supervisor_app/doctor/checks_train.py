"""Checks of what `smc train` reads: the /opt/ml tree, the config files, channels, entry point.

The config files are read with smc train's own JSON reader and the job is planned with its own
plan_job, so doctor and train cannot disagree; their errors become findings."""

from __future__ import annotations

import os
from pathlib import Path

from supervisor_app.config import Config
from supervisor_app.config.job_files import read_json_object
from supervisor_app.config.train import TrainConfig, load_train_config
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.errors import ConfigError, SmcError
from supervisor_app.train import entry_point
from supervisor_app.train.plan import TrainPlan, plan_job
from supervisor_app.train.resources import Resources


def check_layout(config: Config) -> list[Finding]:
    layout = config.layout
    if not layout.base.is_dir():
        return [
            warn(
                "opt_ml",
                f"{layout.base} does not exist",
                "SageMaker mounts it when a job starts; to check a job here, point SAGEMAKER_BASE_DIR at a "
                "tree with input/config/*.json",
                str(layout.base),
            )
        ]
    findings = [ok("opt_ml", f"{layout.base} exists", str(layout.base))]
    for directory in (layout.model_dir, layout.output_dir):
        if directory.exists() and not os.access(directory, os.W_OK):
            findings.append(
                fail(
                    "opt_ml",
                    f"{directory} is not writable by uid {os.getuid()}",
                    f"make it writable in the image (chown/chmod {directory}) or run as root",
                    str(directory),
                )
            )
    return findings


def _has_job(config: Config) -> bool:
    return config.layout.input_config_dir.is_dir()


def check_config_files(config: Config) -> list[Finding]:
    """Each JSON file on its own, so every broken file is reported, not only the first."""
    layout = config.layout
    if not _has_job(config):
        return [ok("config_files", f"no {layout.input_config_dir} (SageMaker writes the job's config at start)")]
    findings = []
    files = (
        (layout.hyperparameters_file, False),
        (layout.resource_config_file, True),
        (layout.input_data_config_file, False),
    )
    for path, required in files:
        findings.append(_check_json_file(path, required))
    return findings


def _check_json_file(path: Path, required: bool) -> Finding:
    check = "config_" + path.stem
    try:
        data, found = read_json_object(path, required)  # the very reader smc train uses
    except ConfigError as exc:
        return fail(check, exc.message, exc.hint, str(path))
    if not found:
        return ok(check, f"{path.name} absent (optional)", str(path))
    if path.name == "hyperparameters.json":
        not_strings = sorted(k for k, v in data.items() if not isinstance(v, str))
        if not_strings:
            return warn(
                check,
                f"hyperparameters not stored as strings: {', '.join(not_strings)}",
                'SageMaker stores every value as a string (the SDK JSON-encodes them: "epochs": "10"); '
                "smc uses such values as they are",
                str(path),
            )
    return ok(check, f"{path.name} is valid JSON", str(path))


def load_job(config: Config) -> tuple[TrainConfig | None, list[Finding]]:
    """The typed training config, when there is a job tree to read."""
    if not _has_job(config) or not config.layout.resource_config_file.exists():
        return None, []
    try:
        train = load_train_config(config)
    except SmcError as exc:
        return None, [fail("train_config", exc.message, exc.hint)]
    channels = sorted(train.input_data_config)
    findings = [ok("train_config", f"{len(train.hyperparameters)} hyperparameters, channels: {channels or 'none'}")]
    data_dir = config.layout.input_data_dir
    if data_dir.is_dir():
        extra = sorted(p.name for p in data_dir.iterdir() if p.is_dir() and p.name not in train.input_data_config)
        if extra and train.input_data_config:
            findings.append(
                warn(
                    "channels",
                    f"data directories not declared in inputdataconfig.json: {', '.join(extra)}",
                    "declare them in inputdataconfig.json or the script will get no SM_CHANNEL_<NAME> for them",
                    str(data_dir),
                )
            )
    return train, findings


def plan(config: Config, train: TrainConfig | None) -> tuple[TrainPlan | None, list[Finding]]:
    """The job's plan, as smc train makes it; an image without a job tree is planned from its
    settings alone. Devices are not counted: no check here depends on them."""
    try:
        job = train if train is not None else load_train_config(config, job_files=False)
    except SmcError as exc:  # a setting; the job files were reported by load_job
        return None, [fail("train_config", exc.message, exc.hint)]
    try:
        return plan_job(job, Resources(num_cpus=1, num_gpus=0, num_neurons=0)), []
    except SmcError as exc:
        return None, [fail("train_plan", exc.message, exc.hint)]


def check_entry_point(plan: TrainPlan | None) -> list[Finding]:
    if plan is None:
        return []  # the plan's own error is the finding
    name = plan.entry_point
    if not name:
        if plan.framework_module:
            return [ok("entry_point", f"{plan.framework_module} (SAGEMAKER_TRAINING_MODULE) starts the job")]
        return [
            warn(
                "entry_point",
                "no entry point configured yet (SAGEMAKER_PROGRAM unset, no sagemaker_program hyperparameter)",
                "for a training image: pass entry_point with the SDK, or set ENV SAGEMAKER_PROGRAM to the "
                "script's file name in the Dockerfile; an inference-only image needs none (check it with "
                "`smc doctor serve`: serve reads SAGEMAKER_PROGRAM as its handler's name)",
            )
        ]
    code_dir = plan.code_dir
    if plan.source != str(code_dir):
        if not Path(plan.source).is_dir():
            return [ok("entry_point", f"{name} comes from {plan.source} at job start (not checked here)")]
        code_dir = Path(plan.source)
    if not code_dir.is_dir():
        return [
            fail(
                "entry_point",
                f"entry point {name} configured but the code dir {code_dir} does not exist",
                f"COPY your code to {code_dir} in the Dockerfile, or pass source_dir with the SDK",
                str(code_dir),
            )
        ]
    findings = []
    try:
        entry_point.validate_name(name)
        path = entry_point.entry_path(code_dir, name)
        kind = entry_point.kind_of(code_dir, name)
    except SmcError as exc:
        return [fail("entry_point", exc.message, exc.hint)]
    python = plan.python
    runner = "smc's embedded Python" if python.embedded else python.argv[0]
    if kind in (entry_point.Kind.PROGRAM, entry_point.Kind.PACKAGE):
        findings.append(ok("entry_point", f"{name} ({kind.value}) runs with {runner}", str(path)))
    elif kind is entry_point.Kind.COMMAND and not os.access(path, os.X_OK):
        findings.append(
            warn(
                "entry_point",
                f"{name} is not executable; smc will chmod it at start (fails on a read-only code dir)",
                f"RUN chmod +x {path} in the Dockerfile",
                str(path),
            )
        )
    else:
        findings.append(ok("entry_point", f"{name} ({kind.value}) is runnable", str(path)))
    findings.append(check_requirements(code_dir / "requirements.txt", python.embedded))
    return findings


def check_requirements(path: Path, embedded: bool) -> Finding:
    if not path.exists():
        return ok("requirements", "no requirements.txt in the code dir", str(path))
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        return fail("requirements", f"{path} cannot be read: {exc}", f"make {path.name} readable UTF-8 text", str(path))
    wanted = [line for line in lines if line and not line.startswith("#")]
    if embedded and wanted:
        return warn(
            "requirements",
            f"{len(wanted)} requirements are installed with the embedded pip at every job start (wheels only)",
            "install them at image build time instead: RUN smc python -m pip install -r requirements.txt",
            str(path),
        )
    return ok("requirements", f"{len(wanted)} requirements, installed before the script runs", str(path))
