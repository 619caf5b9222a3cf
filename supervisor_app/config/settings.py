"""Declare each environment setting once: its names, parser, default and doc.

Parsers take (env_name, raw_value) so every error can say which variable was wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from supervisor_app.errors import ConfigError

Parser = Callable[[str, str], Any]

_LEVEL_NAMES = {
    "CRITICAL": 50,
    "FATAL": 50,
    "ERROR": 40,
    "WARNING": 30,
    "WARN": 30,
    "INFO": 20,
    "DEBUG": 10,
    "NOTSET": 0,
}


@dataclass(frozen=True)
class Setting:
    field: str
    env: tuple[str, ...]  # first one set wins
    parse: Parser
    default: Any
    doc: str
    group: str = "core"


def parse_str(name: str, raw: str) -> str:
    return raw


def parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not an integer", hint=f"set {name} to a whole number, e.g. {name}=4"
        ) from None


def parse_positive_int(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if value < 1:
        raise ConfigError(f"{name}={raw!r} must be at least 1", hint=f"set {name} to 1 or more")
    return value


def parse_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(
            f"{name}={raw!r} is not a positive number of seconds",
            hint=f"set {name} to seconds, e.g. {name}=60",
        )
    return value


def parse_bool(name: str, raw: str) -> bool:
    text = raw.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean", hint=f"set {name} to true or false")


def parse_log_level(name: str, raw: str) -> int:
    text = raw.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    level = _LEVEL_NAMES.get(text.upper())
    if level is None:
        raise ConfigError(
            f"{name}={raw!r} is not a log level",
            hint=f"use a number (10, 20, 30, 40) or a name (DEBUG, INFO, WARNING, ERROR) for {name}",
        )
    return level


def choice(*allowed: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        value = raw.strip().lower()
        if value not in allowed:
            raise ConfigError(
                f"{name}={raw!r} is not one of {', '.join(allowed)}",
                hint=f"set {name} to one of: {', '.join(allowed)}",
            )
        return value

    return parse


def read_settings(settings: Iterable[Setting], environ: Mapping[str, str]) -> dict[str, Any]:
    """Values by field name; the first variable of a setting that is set and non-empty wins."""
    values: dict[str, Any] = {}
    for setting in settings:
        values[setting.field] = setting.default
        for name in setting.env:
            raw = environ.get(name)
            if raw is not None and raw != "":
                values[setting.field] = setting.parse(name, raw)
                break
    return values


def render_markdown(settings: Iterable[Setting]) -> str:
    """The environment table docs/environment.md carries."""
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for setting in settings:
        names = " / ".join(f"`{n}`" for n in setting.env)
        default = "" if setting.default is None else f"`{setting.default}`"
        rows.append(f"| {names} | {default} | {setting.doc} |")
    return "\n".join(rows)
