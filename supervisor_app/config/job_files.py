"""The training job's config files in /opt/ml/input/config: hyperparameters.json,
resourceconfig.json and inputdataconfig.json, read and checked (`smc train` and `smc doctor`).

Every error names the file, the place in it (line/column for JSON, the key otherwise), what was
expected, and how to fix it. The decoding of hyperparameters follows sagemaker-training 5.x:
json.loads on each value, the raw value when that fails.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor_app.errors import ConfigError
from supervisor_app.paths import Layout

_PIPE_MODE = "pipe"


def decode_hyperparameters(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str], list[str]]:
    """json.loads each value as sagemaker-training does; a value that is not JSON stays a string.

    SageMaker stores every value as a string (the SDK JSON-encodes them). A value that already is
    a number, list, ... (a hand-written file) is kept as it is, as the toolkit does; its key is
    reported so smc can warn."""
    decoded: dict[str, Any] = {}
    not_strings: list[str] = []
    undecoded: list[str] = []
    for key, value in raw.items():
        if not isinstance(value, str):
            not_strings.append(key)
            decoded[key] = value
            continue
        try:
            decoded[key] = json.loads(value)
        except ValueError:
            undecoded.append(key)
            decoded[key] = value
    return decoded, not_strings, undecoded


def read_json_object(path: Path, required: bool) -> tuple[dict[str, Any], bool]:
    """One of the job's config files as a JSON object, and whether it exists; `smc doctor` reads
    them with this too. Raises ConfigError naming the file, the place and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if not required:
            return {}, False
        raise ConfigError(
            f"{path} is missing",
            hint="SageMaker writes it for every training job; when running locally, create it, e.g. "
            '{"current_host": "algo-1", "hosts": ["algo-1"]}',
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"{path} cannot be read: {reason}",
            hint=f"make {path.name} a readable UTF-8 JSON file",
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}",
            hint=f"fix the JSON in {path.name} (check quotes and trailing commas)",
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a JSON object at the top level, found {_json_type(data)}",
            hint=f'{path.name} must look like {{"key": ...}}',
        )
    return data, True


def check_resource_config(path: Path, data: dict[str, Any]) -> dict[str, Any]:
    current = data.get("current_host")
    if not isinstance(current, str) or not current:
        raise ConfigError(
            f"{path}: key 'current_host' must be a non-empty string, found {_describe(data, 'current_host')}",
            hint='set "current_host": "algo-1" (the name of this host)',
        )
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, str) for h in hosts):
        raise ConfigError(
            f"{path}: key 'hosts' must be a non-empty list of strings, found {_describe(data, 'hosts')}",
            hint='set "hosts": ["algo-1"] (every host of the job, sorted)',
        )
    for key in ("current_instance_type", "current_group_name", "network_interface_name"):
        if key in data and not isinstance(data[key], str):
            raise ConfigError(
                f"{path}: key '{key}' must be a string, found {_json_type(data[key])}",
                hint=f"write {key} as a JSON string",
            )
    groups = data.get("instance_groups", [])
    if not isinstance(groups, list) or not all(
        isinstance(g, dict)
        and isinstance(g.get("instance_group_name"), str)
        and isinstance(g.get("hosts"), list)
        for g in groups
    ):
        raise ConfigError(
            f"{path}: key 'instance_groups' must be a list of objects with 'instance_group_name' "
            "(string) and 'hosts' (list)",
            hint='e.g. "instance_groups": [{"instance_group_name": "train1", "instance_type": '
            '"ml.m5.xlarge", "hosts": ["algo-1"]}]',
        )
    return data


def check_channels(layout: Layout, input_data_config: Mapping[str, Any]) -> None:
    path = layout.input_data_config_file
    for name, channel in input_data_config.items():
        if not isinstance(channel, dict):
            raise ConfigError(
                f"{path}: channel '{name}' must be a JSON object, found {_json_type(channel)}",
                hint=f'e.g. "{name}": {{"TrainingInputMode": "File"}}',
            )
        mode = str(channel.get("TrainingInputMode", "File")).lower()
        # Pipe mode feeds FIFOs named <channel>_<epoch>; there is no <channel> directory.
        if mode == _PIPE_MODE:
            continue
        directory = layout.channel_dir(name)
        if not directory.is_dir():
            raise ConfigError(
                f"channel '{name}' is declared in {path} but its directory {directory} does not exist",
                hint=f"put the channel's data in {directory}, or remove '{name}' from {path.name}",
            )


def _describe(data: Mapping[str, Any], key: str) -> str:
    return _json_type(data[key]) if key in data else "no such key"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
