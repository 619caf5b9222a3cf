"""serve.preflight.nginx_argv: `-e stderr` only for an nginx that has the option (1.19.5+)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from supervisor_app.serve.preflight import nginx_argv, nginx_version


def stand_in(tmp_path: Path, says: str) -> str:
    """An executable that answers `-v` as an nginx of that version would (on stderr)."""
    path = tmp_path / "nginx"
    path.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
    path.chmod(0o755)
    return str(path)


def argv(nginx: str, tmp_path: Path) -> list[str]:
    return nginx_argv(nginx, tmp_path, tmp_path / "nginx.conf", dict(os.environ))


def test_the_hosts_nginx_gets_the_early_error_log_option(tmp_path):
    nginx = shutil.which("nginx") or pytest.fail("nginx missing: apt-get install -y nginx-light")
    assert nginx_version(nginx, dict(os.environ)) >= (1, 19, 5)
    assert argv(nginx, tmp_path)[1:3] == ["-e", "stderr"]


@pytest.mark.parametrize(
    ("says", "has_option"),
    [
        ("nginx version: nginx/1.18.0", False),  # Debian 11, Ubuntu 20.04
        ("nginx version: nginx/1.19.4", False),
        ("nginx version: nginx/1.19.5", True),
        ("nginx version: nginx/1.26.3 (Ubuntu)", True),
        ("nginx version: openresty/1.21.4.1", True),  # says no nginx version: assume a current one
    ],
)
def test_the_option_follows_the_version(tmp_path, says, has_option):
    got = argv(stand_in(tmp_path, says), tmp_path)
    assert ("-e" in got) is has_option, got
    assert got[-4:] == ["-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]


def test_an_nginx_that_cannot_run_keeps_the_option(tmp_path):
    assert argv(str(tmp_path / "missing"), tmp_path)[1:3] == ["-e", "stderr"]
