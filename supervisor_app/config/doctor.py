"""Settings only `smc doctor` looks at: what the environment asks of the image."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor_app.config.core import Config
from supervisor_app.config.settings import Setting, parse_bool, read_settings

DOCTOR_SETTINGS: tuple[Setting, ...] = (
    Setting(
        "multi_model",
        ("SAGEMAKER_MULTI_MODEL",),
        parse_bool,
        False,
        "Multi-model endpoint: doctor checks the image handler and, with --image, the multi-models label.",
        "doctor",
    ),
)


@dataclass(frozen=True)
class DoctorConfig:
    multi_model: bool


def load_doctor_config(config: Config) -> DoctorConfig:
    return DoctorConfig(**read_settings(DOCTOR_SETTINGS, config.environ))
