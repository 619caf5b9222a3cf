"""Default codecs when the user's environment brings numpy (smc python -m pip install numpy):
JSON and CSV decode to arrays as sagemaker-inference does, and application/x-npy works both ways."""

from __future__ import annotations

import struct
import subprocess

import pytest

from tests.conftest import clean_env


def npy_bytes(shape: tuple[int, ...], values: list[float]) -> bytes:
    """A .npy file (format 1.0, little-endian float64), written by hand: the test venv has no numpy."""
    header = f"{{'descr': '<f8', 'fortran_order': False, 'shape': {shape}, }}"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode() + struct.pack(f"<{len(values)}d", *values)


@pytest.fixture(scope="module")
def numpy_prefix(smc_binary, tmp_path_factory):
    prefix = tmp_path_factory.mktemp("prefix")
    result = subprocess.run([str(smc_binary), "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
                             "numpy"], check=False, env={**clean_env(), "SMC_PREFIX": str(prefix)}, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"numpy is needed for this test and could not be installed:\n{result.stderr}"
    return prefix


def test_default_codecs_use_numpy_when_installed(start_server, numpy_prefix):
    server = start_server("numpy_scale", env={"SMC_PREFIX": str(numpy_prefix)})
    assert server.invoke([[1, 2], [3, 4]]).json() == [[2.0, 4.0], [6.0, 8.0]]
    assert server.invoke("1,2\n3,4\n", content_type="text/csv", accept="text/csv").body == b"2.0,4.0\n6.0,8.0\n"
    resp = server.invoke(npy_bytes((2, 2), [1, 2, 3, 4]), content_type="application/x-npy", accept="application/x-npy")
    assert resp.status == 200, resp.body
    assert resp.headers["content-type"] == "application/x-npy"
    assert resp.body.startswith(b"\x93NUMPY")
    assert struct.unpack("<4d", resp.body[-32:]) == (2.0, 4.0, 6.0, 8.0)
    bad = server.invoke(b"\x93NUMPYgarbage", content_type="application/x-npy")
    assert bad.status == 400


def test_npy_without_numpy_is_415_with_hint(echo_server):
    resp = echo_server.invoke(npy_bytes((1,), [1.0]), content_type="application/x-npy")
    assert resp.status == 415
    assert "pip install numpy" in resp.json()["message"]
