"""Config: env snapshot -> frozen, typed values; clear errors naming the variable."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from supervisor_app.config import CORE_SETTINGS, load_config
from supervisor_app.config.settings import parse_bool, parse_seconds, render_markdown
from supervisor_app.errors import ConfigError


def test_defaults_outside_sagemaker():
    config = load_config({})
    assert config.base_dir == Path("/opt/ml")
    assert config.layout.hyperparameters_file == Path("/opt/ml/input/config/hyperparameters.json")
    assert config.log_level == 20
    assert config.log_format == "auto"


def test_base_dir_moves_the_whole_layout(tmp_path):
    config = load_config({"SAGEMAKER_BASE_DIR": str(tmp_path)})
    assert config.layout.failure_file == tmp_path / "output" / "failure"
    assert config.layout.channel_dir("train") == tmp_path / "input" / "data" / "train"


def test_config_is_frozen_and_environ_is_a_snapshot():
    env = {"A": "1"}
    config = load_config(env)
    env["A"] = "2"
    assert config.environ["A"] == "1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.log_level = 10  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.environ["A"] = "3"  # type: ignore[index]


@pytest.mark.parametrize(("raw", "level"), [("10", 10), ("debug", 10), ("WARNING", 30), ("40", 40)])
def test_log_level_by_number_or_name(raw, level):
    assert load_config({"SAGEMAKER_CONTAINER_LOG_LEVEL": raw}).log_level == level


def test_container_log_level_wins_over_sm_log_level():
    assert load_config({"SAGEMAKER_CONTAINER_LOG_LEVEL": "30", "SM_LOG_LEVEL": "10"}).log_level == 30
    assert load_config({"SM_LOG_LEVEL": "10"}).log_level == 10


def test_bad_values_name_the_variable_and_how_to_fix():
    with pytest.raises(ConfigError) as err:
        load_config({"SMC_LOG_FORMAT": "xml"})
    assert "SMC_LOG_FORMAT='xml'" in err.value.message and "json" in err.value.hint
    with pytest.raises(ConfigError, match="T_S='-1' is not a positive number"):
        parse_seconds("T_S", "-1")
    with pytest.raises(ConfigError, match="B='maybe' is not a boolean"):
        parse_bool("B", "maybe")


def test_every_setting_is_documented():
    table = render_markdown(CORE_SETTINGS)
    for setting in CORE_SETTINGS:
        assert setting.doc
        for name in setting.env:
            assert f"`{name}`" in table


def test_environment_doc_tables_are_current():
    import subprocess
    import sys

    from tests.conftest import ROOT

    result = subprocess.run([sys.executable, "build/envdoc.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout
