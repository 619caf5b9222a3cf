"""The frozen binary's command line: help, version, dispatch, usage errors."""

from __future__ import annotations

import re

from supervisor_app import __version__
from supervisor_app.cli import COMMANDS


def test_help_lists_every_command_with_one_line(smc):
    result = smc("--help")
    assert result.returncode == 0
    for name in COMMANDS:
        lines = [line for line in result.stdout.splitlines() if line.strip().startswith(name + " ")]
        assert len(lines) == 1, f"{name} should have exactly one help line:\n{result.stdout}"
        assert len(lines[0].split(None, 1)[1]) > 10


def test_version_flag_prints_package_version(smc):
    result = smc("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"smc {__version__}"


def test_version_command_says_it_is_frozen(smc):
    result = smc("version")
    assert result.returncode == 0
    assert re.match(rf"smc {re.escape(__version__)} \(Python 3\.\d+\.\d+, frozen, linux\)", result.stdout)


def test_unknown_command_exits_2_with_usage_on_stderr(smc):
    result = smc("frobnicate")
    assert result.returncode == 2
    assert result.stdout == ""
    assert "unknown command 'frobnicate'" in result.stderr
    assert "usage: smc <command>" in result.stderr


def test_no_command_exits_2_with_usage(smc):
    result = smc()
    assert result.returncode == 2
    assert "usage: smc <command>" in result.stderr


def test_bad_log_level_names_the_variable(smc):
    result = smc("doctor", env={"SAGEMAKER_CONTAINER_LOG_LEVEL": "LOUD"})
    assert result.returncode == 5
    assert "SAGEMAKER_CONTAINER_LOG_LEVEL='LOUD' is not a log level" in result.stderr
    assert "Hint:" in result.stderr


def test_every_package_module_is_in_the_binary(smc, tmp_path):
    """Commands are imported lazily by name, so the spec must collect them explicitly."""
    from tests.conftest import ROOT

    package = ROOT / "supervisor_app"
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for path in package.rglob("*.py")
        if path.name != "__main__.py"
    )
    code = "import importlib, sys\nfor m in sys.argv[1:]:\n    importlib.import_module(m.removesuffix('.__init__'))\nprint('ok')"
    result = smc("python", "-c", code, *modules, cwd=tmp_path)
    assert result.stdout == "ok\n", result.stderr
