"""interpreter.choose: which Python runs user code, one rule for train, serve and doctor."""

from __future__ import annotations

import pytest

from supervisor_app import interpreter
from supervisor_app.errors import ConfigError


def _python3(directory, name: str = "python3"):
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_embedded_by_name(tmp_path):
    chosen = interpreter.choose("embedded", str(tmp_path), tmp_path / "prefix")
    assert chosen.embedded and chosen.reason == "SMC_PYTHON=embedded"


def test_a_path_or_command_named_by_smc_python(tmp_path):
    python = _python3(tmp_path / "bin", "python3.12")
    assert interpreter.choose(str(python), None, tmp_path).argv == (str(python),)
    chosen = interpreter.choose("python3.12", str(tmp_path / "bin"), tmp_path / "prefix")
    assert chosen.argv == (str(python),) and not chosen.embedded and chosen.reason == "SMC_PYTHON=python3.12"


def test_smc_python_naming_nothing_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError) as raised:
        interpreter.choose("/no/such/python3", str(tmp_path), tmp_path / "prefix")
    assert "/no/such/python3" in raised.value.message and "embedded" in raised.value.hint


def test_python3_on_path_by_default(tmp_path):
    python = _python3(tmp_path / "bin")
    chosen = interpreter.choose("", str(tmp_path / "bin"), tmp_path / "prefix")
    assert chosen.argv == (str(python),) and chosen.reason == "python3 on PATH"


def test_packages_in_smc_prefix_keep_the_embedded_interpreter(tmp_path):
    _python3(tmp_path / "bin")
    site = tmp_path / "prefix" / "lib" / "python3.11" / "site-packages"
    (site / "pandas-2.2.3.dist-info").mkdir(parents=True)
    chosen = interpreter.choose("", str(tmp_path / "bin"), tmp_path / "prefix")
    assert chosen.embedded and "pandas" in chosen.reason and "SMC_PREFIX" in chosen.reason
    # An explicit SMC_PYTHON still wins (doctor warns that the prefix's packages go unseen).
    assert not interpreter.choose("python3", str(tmp_path / "bin"), tmp_path / "prefix").embedded


def test_no_python3_means_the_embedded_interpreter(tmp_path):
    chosen = interpreter.choose("", str(tmp_path / "empty"), tmp_path / "prefix")
    assert chosen.embedded and chosen.reason == "no python3 on PATH"
