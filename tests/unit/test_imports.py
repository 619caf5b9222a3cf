"""Fast commands stay fast: `smc version` and `smc python` never import the server stack."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

HEAVY = ("flask", "gunicorn", "werkzeug", "jinja2", "structlog", "pip")


def _imported_after(args: str) -> set[str]:
    code = (
        "import sys, contextlib, io\n"
        "from supervisor_app import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    cli.run({args}, {{}})\n"
        "print(' '.join(sorted(m.split('.')[0] for m in sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(result.stdout.split())


def test_version_imports_no_server_stack():
    assert not _imported_after("['version']") & set(HEAVY)


def test_python_command_imports_no_server_stack():
    assert not _imported_after("['python', '-c', 'pass']") & set(HEAVY)
