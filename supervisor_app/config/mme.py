"""Settings of multi-model endpoints (SAGEMAKER_MULTI_MODEL=true: the /models API of `smc serve`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from supervisor_app.config.settings import (
    Setting,
    parse_bool,
    parse_int,
    parse_seconds,
    parse_str,
    read_settings,
)
from supervisor_app.errors import ConfigError
from supervisor_app.worker.settings import MmeSettings

G = "serve (multi-model)"


def parse_mb(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative", hint=f"set {name} to a number of MiB, e.g. 512")
    return value


def parse_roots(name: str, raw: str) -> tuple[str, ...]:
    roots = tuple(part.strip() for part in raw.split(":") if part.strip())
    bad = [root for root in roots if not root.startswith("/")]
    if bad or not roots:
        raise ConfigError(
            f"{name}={raw!r} must list absolute directories separated by ':'",
            hint=f"e.g. {name}=/opt/ml/models:/mnt/models",
        )
    return roots


MME_SETTINGS: tuple[Setting, ...] = (
    Setting("enabled", ("SAGEMAKER_MULTI_MODEL",), parse_bool, False,
            "true: a multi-model endpoint. `smc serve` then offers the /models API (load, list, describe, "
            "unload, invoke) instead of serving /opt/ml/model; the image should carry "
            "LABEL com.amazonaws.sagemaker.capabilities.multi-models=true.", G),
    Setting("model_roots", ("SMC_MME_MODEL_ROOTS",), parse_roots, None,
            "Directories POST /models may load from, separated by ':'; default `$SAGEMAKER_BASE_DIR/models` "
            "(where SageMaker puts each model). A url outside them is refused with 400.", G),
    Setting("memory_limit_mb", ("SMC_MME_MEMORY_LIMIT_MB",), parse_mb, None,
            "Memory the loaded models may use, in MiB; default: the container's cgroup limit, else the "
            "machine's memory. A load that would pass the limit minus the headroom answers 507.", G),
    Setting("memory_headroom_mb", ("SMC_MME_MEMORY_HEADROOM_MB",), parse_mb, 256,
            "MiB kept free for requests in flight: loads stop (507) at limit minus headroom.", G),
    Setting("sync_timeout_s", ("SMC_MME_SYNC_SECONDS",), parse_seconds, None,
            "Seconds a load or unload waits for every other worker to follow before answering; "
            "default SAGEMAKER_MODEL_SERVER_TIMEOUT + 10 (a busy worker follows after its current request).", G),
    Setting("handler_dir", ("SMC_MME_HANDLER_DIR",), parse_str, None,
            "Where the image's handler for models without their own code/inference.py lives; default "
            "SAGEMAKER_SUBMIT_DIRECTORY if set, else the first of `$SAGEMAKER_BASE_DIR/code` and "
            "`$SAGEMAKER_BASE_DIR/models/code` (where sagemaker-inference looks in multi-model mode) that has it.", G),
)


def load_mme_config(environ: Mapping[str, str], base_dir: Path, submit_dir: str | None) -> MmeSettings | None:
    """None unless SAGEMAKER_MULTI_MODEL=true."""
    values = read_settings(MME_SETTINGS, environ)
    if not values["enabled"]:
        return None
    roots = values["model_roots"] or (str(base_dir / "models"),)
    if values["handler_dir"]:
        handler_dirs: tuple[Path, ...] = (Path(values["handler_dir"]),)
    elif submit_dir and not submit_dir.startswith("s3://"):
        handler_dirs = (Path(submit_dir),)
    else:
        handler_dirs = (base_dir / "code", base_dir / "models" / "code")
    return MmeSettings(
        model_roots=tuple(Path(root) for root in roots),
        memory_limit_mb=values["memory_limit_mb"],
        memory_headroom_mb=values["memory_headroom_mb"],
        sync_timeout_s=values["sync_timeout_s"],
        handler_dirs=handler_dirs,
    )


__all__ = ["MME_SETTINGS", "load_mme_config"]
