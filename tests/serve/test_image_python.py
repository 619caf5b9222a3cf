"""smc serve under the image's own Python (SMC_PYTHON / python3 on PATH): a handler, a Flask app
and a FastAPI app that import packages only that Python has, on real CPython 3.9, 3.11 and 3.13
(tests/image_pythons.py), and the interpreter faults with their causes and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.image_pythons import VERSIONS, find_cpython, image_python
from tests.serve.conftest import Server, free_port, nginx_required

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "image_python"
ROWS = {"rows": [["a", 1], ["b", 2]]}
TABLE = "a  1\nb  2"


@pytest.fixture(scope="module", params=VERSIONS)
def python(request) -> Path:
    found = image_python(request.param)
    if found is None:
        pytest.skip(f"no CPython {request.param} on this machine")
    return found


def _serve(smc_binary: Path, base: Path, env: dict[str, str], wait: bool = True) -> Server:
    nginx_required()
    for sub in ("model", "code"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    server = Server(smc_binary, base, free_port(), env)
    if wait:
        server.wait_ready(timeout=60)
    return server


def _stop(server: Server) -> None:
    code = server.stop()
    assert code == 0, server.output()


def _copy(base: Path, *names: str) -> None:
    for name in names:
        shutil.copy(FIXTURES / name, base / "code" / name)


def _version(python: Path) -> str:
    return python.parent.parent.name.split("-")[2]  # image-python-3.11-KEY


def test_handler_with_an_image_only_package(smc_binary, tmp_path, python):
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    server = _serve(smc_binary, base, {"SMC_PYTHON": str(python), "SAGEMAKER_MODEL_SERVER_WORKERS": "2"})
    try:
        answer = server.invoke(json.dumps(ROWS))
        assert answer.status == 200, answer.body
        body = answer.json()
        assert body["table"] == TABLE
        assert body["python"].startswith(_version(python) + ".")
        assert body["executable"] == str(python)
        chosen = server.events("python_chosen")[0]
        assert chosen["embedded"] is False and chosen["version"] == body["python"], chosen
        assert chosen["why"] == f"SMC_PYTHON={python}"
    finally:
        _stop(server)


# An app with the image's own framework: (fixture file, setting, the framework's module field).
APPS = {"flask": ("flask_app.py", "SMC_WSGI_APP", "flask"), "fastapi": ("fastapi_app.py", "SMC_ASGI_APP", "fastapi")}


@pytest.mark.parametrize("kind", list(APPS))
def test_app_with_the_images_framework(smc_binary, tmp_path, python, kind):
    module, setting, framework = APPS[kind]
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, module)
    server = _serve(smc_binary, base, {"SMC_PYTHON": str(python), setting: f"{module[:-3]}:app"})
    try:
        answer = server.invoke(json.dumps(ROWS))
        assert answer.status == 200, answer.body
        body = answer.json()
        assert body["table"] == TABLE and body["executable"] == str(python)
        assert body[framework].startswith(str(python.parent.parent)), body  # the image's, not smc's
        if kind == "fastapi":
            assert "/fallback/uvicorn/" in body["uvicorn"], body  # the image has none: smc's copy serves
    finally:
        _stop(server)


def test_safe_path_python_keeps_its_own_sys_path(smc_binary, tmp_path):
    """PYTHONSAFEPATH=1 (3.11+): no script directory on sys.path, and smc's start script must not
    take the first real entry off it (a PYTHONPATH dir the handler imports from)."""
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "image_helper.py").write_text("VALUE = 7\n")
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "inference.py").write_text(
        "import image_helper\ndef model_fn(d):\n    return None\n"
        "def predict_fn(data, model):\n    return {'value': image_helper.VALUE}\n")
    server = _serve(smc_binary, base, {"SMC_PYTHON": str(python), "PYTHONSAFEPATH": "1", "PYTHONPATH": str(extra)})
    try:
        assert server.invoke(json.dumps({})).json() == {"value": 7}
    finally:
        _stop(server)


def test_python3_on_path_is_the_default(smc_binary, tmp_path):
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    env = {"PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}", "SMC_PYTHON": ""}  # "": the default rule
    server = _serve(smc_binary, base, env)
    try:
        answer = server.invoke(json.dumps(ROWS))
        assert answer.status == 200 and answer.json()["table"] == TABLE, answer.body
        assert server.events("python_chosen")[0]["why"] == "python3 on PATH"
    finally:
        _stop(server)


def test_packages_in_smc_prefix_keep_the_embedded_interpreter(smc_binary, tmp_path):
    """An image that installed its packages with `smc python -m pip` into SMC_PREFIX, and also has a
    python3: serve stays on the embedded interpreter, and says why."""
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    prefix = tmp_path / "prefix"
    site = prefix / "lib" / "python3.11" / "site-packages"
    (site / "smc_prefix_only").mkdir(parents=True)
    (site / "smc_prefix_only" / "__init__.py").write_text("VALUE = 'from SMC_PREFIX'\n")
    (site / "smc_prefix_only-1.0.dist-info").mkdir()
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "inference.py").write_text(
        "import sys, smc_prefix_only\n"
        "def model_fn(model_dir):\n    return None\n"
        "def predict_fn(data, model):\n    return {'value': smc_prefix_only.VALUE, 'frozen': hasattr(sys, 'frozen')}\n")
    env = {"PATH": f"{python.parent}{os.pathsep}{os.environ['PATH']}", "SMC_PREFIX": str(prefix), "SMC_PYTHON": ""}
    server = _serve(smc_binary, base, env)
    try:
        answer = server.invoke(json.dumps({}))
        assert answer.json() == {"value": "from SMC_PREFIX", "frozen": True}, answer.body
        chosen = server.events("python_chosen")[0]
        assert chosen["embedded"] is True and "smc_prefix_only" in chosen["why"], chosen
    finally:
        _stop(server)


# -- faults: each a JSON error with the cause and the fix, and the README's exit code -------------
def _failed(server: Server) -> dict:
    code = server.wait_exit(timeout=60)
    failures = [e for e in server.lines() if e.get("event") == "command_failed"]
    assert failures, server.output()
    failures[-1]["exit_code_seen"] = code
    return failures[-1]


def test_python_older_than_3_9_is_refused(smc_binary, tmp_path):
    old = find_cpython("3.8")
    if old is None:
        pytest.skip("no CPython 3.8")
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    failure = _failed(_serve(smc_binary, base, {"SMC_PYTHON": str(old)}, wait=False))
    assert failure["exit_code_seen"] == 3, failure
    assert "3.8" in failure["error"] and "3.9 or newer" in failure["error"], failure
    assert "SMC_PYTHON=embedded" in failure["hint"], failure


def test_missing_smc_python_is_a_config_error(smc_binary, tmp_path):
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    failure = _failed(_serve(smc_binary, base, {"SMC_PYTHON": str(tmp_path / "no-such-python")}, wait=False))
    assert failure["exit_code_seen"] == 5, failure
    assert "no-such-python" in failure["error"] and "embedded" in failure["hint"], failure


def test_python_that_fails_to_start(smc_binary, tmp_path):
    broken = tmp_path / "bin" / "python3"
    broken.parent.mkdir()
    broken.write_text("#!/bin/sh\necho 'error while loading shared libraries: libpython3.11.so.1.0' >&2\nexit 127\n")
    broken.chmod(0o755)
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    env = {"PATH": f"{broken.parent}{os.pathsep}{os.environ['PATH']}", "SMC_PYTHON": ""}
    failure = _failed(_serve(smc_binary, base, env, wait=False))
    assert failure["exit_code_seen"] == 3, failure
    assert "fails to start" in failure["error"] and "libpython3.11" in failure["error"], failure
    assert "python3 on PATH" in failure["error"], failure


def test_image_gunicorn_of_another_version_does_not_replace_smcs(smc_binary, tmp_path):
    """A gunicorn of another version in the image's site-packages: smc's own serves."""
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    fake = tmp_path / "image-site" / "gunicorn"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the image gunicorn 19.9 was imported')\n")
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    env = {"SMC_PYTHON": str(python), "PYTHONPATH": str(fake.parent)}
    server = _serve(smc_binary, base, env)
    try:
        assert server.invoke(json.dumps(ROWS)).status == 200
        started = server.events("gunicorn_starting")[0]
        assert started["version"] != "19.9", started
    finally:
        _stop(server)


def test_module_shadowing_the_standard_library_is_named(smc_binary, tmp_path):
    """A `json.py` on the image's PYTHONPATH breaks smc's worker code: the error names it."""
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "selectors.py").write_text("# not the standard library's selectors\n")
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "inference.py")
    server = _serve(smc_binary, base, {"SMC_PYTHON": str(python), "PYTHONPATH": str(shadow)}, wait=False)
    code = server.wait_exit(timeout=60)
    assert code == 3, server.output()
    failed = [e for e in server.lines() if e.get("event") in ("worker_import_failed", "command_failed")]
    assert any(str(shadow / "selectors.py") in e.get("error", "") for e in failed), server.output()


def test_requirements_without_pip_is_a_clear_error(smc_binary, tmp_path):
    base_python = find_cpython("3.11")
    if base_python is None:
        pytest.skip("no CPython 3.11")
    import subprocess

    venv = tmp_path / "nopip"
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(venv)], check=True)
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "inference.py").write_text("def model_fn(d):\n    return None\n")
    (base / "code" / "requirements.txt").write_text("tabulate\n")
    failure = _failed(_serve(smc_binary, base, {"SMC_PYTHON": str(venv / "bin" / "python3")}, wait=False))
    assert failure["exit_code_seen"] == 5, failure
    assert "no pip" in failure["error"] and "python3-pip" in failure["hint"], failure


def test_an_app_that_relied_on_smcs_bundled_flask_is_told_the_way_back(smc_binary, tmp_path):
    """An image whose Flask app ran on the embedded interpreter's Flask, now served by its own python3
    that has no Flask: exit 4, and the hint names SMC_PYTHON=embedded."""
    base_python = find_cpython("3.11")
    if base_python is None:
        pytest.skip("no CPython 3.11")
    import subprocess

    venv = tmp_path / "bare"
    subprocess.run([str(base_python), "-m", "venv", "--without-pip", str(venv)], check=True)
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    _copy(base, "flask_app.py")
    failure = _failed(_serve(smc_binary, base, {"SMC_PYTHON": str(venv / "bin" / "python3"),
                                                "SMC_WSGI_APP": "flask_app:app"}, wait=False))
    assert failure["exit_code_seen"] == 4, failure
    assert "flask" in failure["error"], failure
    assert "SMC_PYTHON=embedded" in failure["hint"] and "bundles flask" in failure["hint"], failure


def _write_wheel(directory: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel written by hand: an offline index for pip (no build backend needed)."""
    import zipfile

    directory.mkdir(parents=True, exist_ok=True)
    info = f"{name}-{version}.dist-info"
    contents = {**files, f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: smc-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    contents[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*contents, f"{info}/RECORD"])
    wheel = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for path, text in contents.items():
            archive.writestr(path, text)
    return wheel


def test_requirements_install_with_the_images_pip(smc_binary, tmp_path):
    """requirements.txt goes into the image Python's own site-packages with its own pip (offline:
    a local wheel directory), and the handler imports it."""
    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    import subprocess

    venv = tmp_path / "venv"
    subprocess.run([str(python), "-m", "venv", str(venv)], check=True)
    base = tmp_path / "opt_ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "inference.py").write_text(
        "import smc_req_probe\ndef model_fn(d):\n    return None\n"
        "def predict_fn(data, model):\n    return {'value': smc_req_probe.VALUE}\n")
    wheels = tmp_path / "wheels"
    _write_wheel(wheels, "smc_req_probe", "1.0", {"smc_req_probe/__init__.py": "VALUE = 42\n"})
    (base / "code" / "requirements.txt").write_text(f"--no-index\n--find-links {wheels}\nsmc_req_probe==1.0\n")
    server = _serve(smc_binary, base, {"SMC_PYTHON": str(venv / "bin" / "python3")})
    try:
        assert server.invoke(json.dumps({})).json() == {"value": 42}
        installed = server.events("requirements_installed")[0]
        assert installed["target"].startswith(str(venv)), installed
    finally:
        _stop(server)
    assert any((venv / "lib").glob("python3.*/site-packages/smc_req_probe/__init__.py"))


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
