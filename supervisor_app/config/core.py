"""The settings every command shares, and the frozen Config they make."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from supervisor_app.config.settings import (
    Setting,
    choice,
    parse_log_level,
    parse_str,
    read_settings,
)
from supervisor_app.paths import DEFAULT_BASE_DIR, Layout

CORE_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "base_dir",
        ("SAGEMAKER_BASE_DIR",),
        parse_str,
        str(DEFAULT_BASE_DIR),
        "Root of the SageMaker tree (input/, model/, output/, code/); set it to run outside a container.",
    ),
    Setting(
        "log_level",
        ("SAGEMAKER_CONTAINER_LOG_LEVEL", "SM_LOG_LEVEL"),
        parse_log_level,
        20,
        "Log level of smc's own lines: a number (10, 20, 30, 40) or a name (DEBUG, INFO, ...).",
    ),
    Setting(
        "log_format",
        ("SMC_LOG_FORMAT",),
        choice("auto", "json", "console"),
        "auto",
        "`json` (one object per line), `console` (for people), or `auto`: console on a terminal, else json.",
    ),
    Setting(
        "prefix",
        ("SMC_PREFIX",),
        parse_str,
        "/opt/smc",
        "Prefix of the embedded interpreter: `smc python -m pip install X` installs into "
        "PREFIX/lib/python3.X/site-packages, which smc python, train and serve put on sys.path.",
    ),
    Setting(
        "python",
        ("SMC_PYTHON",),
        parse_str,
        "",
        "The Python that runs user code in train and serve (entry points, inference.py, SMC_WSGI_APP, "
        "SMC_ASGI_APP, requirements.txt): a path or command name, or `embedded` for smc's own. Default: "
        "python3 on PATH, unless SMC_PREFIX holds packages installed with `smc python -m pip` (then the "
        "embedded interpreter, which they were installed for); with no python3, the embedded interpreter.",
    ),
    Setting(
        "tmp_dir",
        ("TMPDIR",),
        parse_str,
        "/tmp",
        "Where the binary unpacks itself and smc keeps runtime files; must be writable and not noexec.",
    ),
)


@dataclass(frozen=True)
class Config:
    base_dir: Path
    log_level: int
    log_format: str
    prefix: Path
    tmp_dir: Path
    python: str  # SMC_PYTHON as given; interpreter.py applies the rule
    environ: Mapping[str, str]  # read-only snapshot, passed on to children

    @property
    def layout(self) -> Layout:
        return Layout(self.base_dir)


def load_config(environ: Mapping[str, str]) -> Config:
    values = read_settings(CORE_SETTINGS, environ)
    return Config(
        base_dir=Path(values["base_dir"]),
        log_level=values["log_level"],
        log_format=values["log_format"],
        prefix=Path(values["prefix"]),
        tmp_dir=Path(values["tmp_dir"]),
        python=values["python"],
        environ=MappingProxyType(dict(environ)),
    )
