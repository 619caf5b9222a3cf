"""`smc doctor` against broken fixtures: each check fails (or warns) with what is wrong and how to fix it."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def doctor(smc, *args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    result = smc("doctor", "--json", *args, env=env)
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout)


def by_check(report: dict, check: str) -> dict:
    found = [f for f in report["findings"] if f["check"] == check]
    assert found, f"no finding {check!r} in {report['findings']}"
    return found[0]


def job_tree(base: Path, program: str = "train.py") -> dict[str, str]:
    (base / "input" / "config").mkdir(parents=True, exist_ok=True)
    (base / "input" / "data" / "train").mkdir(parents=True, exist_ok=True)
    (base / "code").mkdir(parents=True, exist_ok=True)
    (base / "code" / "train.py").write_text("print('hi')\n")
    (base / "input" / "config" / "hyperparameters.json").write_text(json.dumps({"epochs": "3"}))
    (base / "input" / "config" / "resourceconfig.json").write_text(
        json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]})
    )
    (base / "input" / "config" / "inputdataconfig.json").write_text(json.dumps({"train": {"TrainingInputMode": "File"}}))
    return {"SAGEMAKER_BASE_DIR": str(base), "SAGEMAKER_PROGRAM": program}


def test_healthy_job_tree_passes_with_exit_0(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    code, report = doctor(smc, "train", env=env)
    assert code == 0 and report["ok"] is True
    assert by_check(report, "train_config")["status"] == "ok"
    assert by_check(report, "entry_point")["status"] == "ok"


def test_human_output_shows_fixes_and_a_summary(smc, tmp_path):
    env = job_tree(tmp_path / "ml", program="missing.py")
    result = smc("doctor", "train", env=env)
    assert result.returncode == 1
    assert "FAIL  entry_point" in result.stdout
    assert "fix: " in result.stdout
    assert result.stdout.rstrip().endswith("1 failures")


def test_json_that_does_not_parse_is_located(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/input/config/hyperparameters.json").write_text('{"epochs": "3",\n "lr": }')
    code, report = doctor(smc, "train", env=env)
    finding = by_check(report, "config_hyperparameters")
    assert code == 1 and finding["status"] == "fail"
    assert "invalid JSON at line 2 column" in finding["message"] and finding["hint"]


def test_missing_resourceconfig_in_a_job_tree_fails(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/input/config/resourceconfig.json").unlink()
    code, report = doctor(smc, "train", env=env)
    assert code == 1
    assert "resourceconfig.json is missing" in by_check(report, "config_resourceconfig")["message"]


def test_hyperparameters_that_are_not_strings_warn(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/input/config/hyperparameters.json").write_text(json.dumps({"epochs": 3, "lr": "0.1"}))
    _, report = doctor(smc, "train", env=env)
    finding = by_check(report, "config_hyperparameters")
    assert finding["status"] == "warn" and "epochs" in finding["message"] and "lr" not in finding["message"]


def test_declared_channel_without_data_fails(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/input/config/inputdataconfig.json").write_text(
        json.dumps({"train": {"TrainingInputMode": "File"}, "validation": {"TrainingInputMode": "File"}})
    )
    code, report = doctor(smc, "train", env=env)
    finding = by_check(report, "train_config")
    assert code == 1 and "validation" in finding["message"]


def test_entry_point_problems_fail(smc, tmp_path):
    env = job_tree(tmp_path / "ml", program="nope.py")
    code, report = doctor(smc, "train", env=env)
    assert code == 1 and "not found" in by_check(report, "entry_point")["message"]
    env = job_tree(tmp_path / "ml2", program="../escape.py")
    code, report = doctor(smc, "train", env=env)
    assert code == 1 and "plain relative path" in by_check(report, "entry_point")["message"]


def test_requirements_that_cannot_be_read_fail(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/code/requirements.txt").write_bytes(b"\xff\xfe numpy\n")
    code, report = doctor(smc, "train", env=env)
    assert code == 1 and by_check(report, "requirements")["status"] == "fail"


def _handler_env(base: Path, source: str | None) -> dict[str, str]:
    code = base / "model" / "code"
    code.mkdir(parents=True)
    if source is not None:
        (code / "inference.py").write_text(source)
    return {"SAGEMAKER_BASE_DIR": str(base), "SMC_NGINX": NGINX}


@pytest.mark.parametrize(
    ("source", "status", "text"),
    [
        ("def model_fn(d):\n    return 1\ndef predict_fn(x, m):\n    return x\n", "ok", "defines model_fn, predict_fn"),
        (None, "fail", "not found"),
        ("import no_such_module_xyz\n", "fail", "raised ModuleNotFoundError on import"),
        (
            "def model_fn(d): pass\ndef predict_fn(x, m): pass\ndef transform_fn(m, d, c, a): pass\n",
            "fail",
            "transform_fn together with predict_fn",
        ),
        ("def predict_fn(x, m):\n    return x\n", "fail", "no model_fn"),
    ],
    ids=["importable", "missing", "raises_on_import", "conflicting_hooks", "no_model_fn"],
)
def test_handler_module(smc, tmp_path, source, status, text):
    code, report = doctor(smc, "serve", env=_handler_env(tmp_path / "ml", source))
    finding = by_check(report, "handler")
    assert finding["status"] == status and text in finding["message"], finding
    assert (code == 0) == (status == "ok")


def test_nginx_missing_says_how_to_install_it(smc, tmp_path):
    code, report = doctor(smc, "serve", env={"SMC_NGINX": str(tmp_path / "no-nginx")})
    finding = by_check(report, "nginx")
    assert code == 1 and finding["status"] == "fail" and "nginx-light" in finding["hint"]
    _, report = doctor(smc, "serve", env={"PATH": str(tmp_path)})
    assert by_check(report, "nginx")["status"] == "fail"


def test_nginx_present_reports_its_version(smc):
    _, report = doctor(smc, "serve", env={"SMC_NGINX": NGINX})
    assert by_check(report, "nginx")["message"].startswith("nginx/")


def test_port_in_use_fails_and_bind_to_port_asks_for_the_label(smc):
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, report = doctor(smc, "serve", env={"SAGEMAKER_BIND_TO_PORT": str(port), "SMC_NGINX": NGINX})
    assert code == 1 and "already in use" in by_check(report, "port")["message"]
    assert "accept-bind-to-port=true" in by_check(report, "label_bind_to_port")["hint"]


def test_multi_model_endpoint_checks_the_image_handler(smc, tmp_path):
    env = {"SAGEMAKER_MULTI_MODEL": "true", "SMC_NGINX": NGINX, "SAGEMAKER_BASE_DIR": str(tmp_path / "ml")}
    (tmp_path / "ml").mkdir()
    code, report = doctor(smc, "serve", env=env)
    assert by_check(report, "multi_model")["status"] == "ok"
    assert "multi-models=true" in by_check(report, "multi_model")["message"]
    no_handler = by_check(report, "handler")
    assert no_handler["status"] == "warn" and "must bring its own code/inference.py" in no_handler["message"]
    assert not [f for f in report["findings"] if f["check"] == "model_dir"]  # no /opt/ml/model in multi-model mode
    (tmp_path / "ml" / "code").mkdir()
    (tmp_path / "ml" / "code" / "inference.py").write_text("def model_fn(d):\n    return 1\n")
    code, report = doctor(smc, "serve", env=env)
    broken = by_check(report, "handler")
    assert code == 1 and broken["status"] == "fail" and "neither predict_fn nor transform_fn" in broken["message"]
    (tmp_path / "ml" / "code" / "inference.py").write_text(
        "def model_fn(d):\n    return 1\n\ndef predict_fn(x, m):\n    return x\n")
    _, report = doctor(smc, "serve", env=env)
    assert by_check(report, "handler")["status"] == "ok"


def test_bad_serve_setting_is_reported_not_crashed(smc):
    code, report = doctor(smc, "serve", env={"SAGEMAKER_MODEL_SERVER_WORKERS": "many"})
    assert code == 1 and "SAGEMAKER_MODEL_SERVER_WORKERS" in by_check(report, "serve_config")["message"]


def _as_uid_1000(smc_binary: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed for the non-root test"
    full = clean_env()
    full.update(env)
    # The checkout may sit below a folder uid 1000 cannot enter (e.g. /root): run a copy.
    copy_dir = Path(tempfile.mkdtemp(prefix="smc-uid1000-", dir="/tmp"))
    try:
        binary = copy_dir / "smc"
        shutil.copy(smc_binary, binary)
        os.chmod(copy_dir, 0o755)
        os.chmod(binary, 0o755)
        return subprocess.run(
            [setpriv, "--reuid", "1000", "--regid", "1000", "--clear-groups", str(binary), *args],
            env=full,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        shutil.rmtree(copy_dir)


def test_non_root_user_on_a_low_port_fails(smc_binary, tmp_path):
    os.chmod(tmp_path, 0o755)
    result = _as_uid_1000(smc_binary, ["doctor", "serve", "--json"], {"SAGEMAKER_BIND_TO_PORT": "80", "SMC_NGINX": NGINX})
    report = json.loads(result.stdout)
    assert result.returncode == 1
    assert "cannot listen on port 80" in by_check(report, "user")["message"]


def test_non_root_user_with_unwritable_output_fails(smc_binary):
    # pytest's tmp_path lives under a 0700 folder that uid 1000 cannot enter.
    base = Path(tempfile.mkdtemp(prefix="smc-doctor-", dir="/tmp"))
    try:
        env = job_tree(base / "ml")
        (base / "ml/output").mkdir()
        subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
        result = _as_uid_1000(smc_binary, ["doctor", "train", "--json"], env)
        report = json.loads(result.stdout)
        assert result.returncode == 1, result.stderr
        finding = [f for f in report["findings"] if f["check"] == "opt_ml" and f["status"] == "fail"]
        assert finding and "output is not writable by uid 1000" in finding[0]["message"]
    finally:
        shutil.rmtree(base)


def test_noexec_temp_dir_fails(tmp_path):
    """The frozen binary cannot even start from a noexec TMPDIR, so this runs doctor from source."""
    unshare = shutil.which("unshare")
    assert unshare, "unshare (util-linux) is needed"
    tmp = tmp_path / "noexec"
    tmp.mkdir()
    script = f"mount -t tmpfs -o noexec tmpfs {tmp} && exec {sys.executable} -m supervisor_app doctor train --json"
    env = dict(clean_env(), TMPDIR=str(tmp), PYTHONPATH=str(ROOT))
    result = subprocess.run([unshare, "--mount", "sh", "-c", script], env=env, capture_output=True, text=True)
    report = json.loads(result.stdout)
    finding = by_check(report, "tmp_dir")
    assert result.returncode == 1 and "noexec" in finding["message"] and "--tmpfs /tmp:exec" in finding["hint"]


def test_mpi_job_in_an_image_without_open_mpi_says_which_packages(smc, tmp_path):
    env = job_tree(tmp_path / "ml")
    (tmp_path / "ml/input/config/hyperparameters.json").write_text(json.dumps({"sagemaker_mpi_enabled": "true"}))
    code, report = doctor(smc, "train", env={**env, "PATH": "/nonexistent"})
    finding = by_check(report, "mpi_programs")
    assert code == 1 and "openmpi-bin" in finding["message"] and "apt-get install" in finding["hint"]


def test_byo_wsgi_app_is_imported_and_checked(smc, tmp_path):
    base = tmp_path / "ml"
    code = base / "model" / "code"
    code.mkdir(parents=True)
    shutil.copy(ROOT / "bench" / "serve" / "seed" / "predictor.py", code / "predictor.py")
    shutil.copy(ROOT / "examples" / "tabular" / "code" / "inference.py", code / "inference.py")
    env = {"SAGEMAKER_BASE_DIR": str(base), "SMC_NGINX": NGINX, "BENCH_MODEL_DIR": str(base / "model")}
    _, report = doctor(smc, "serve", env={**env, "SMC_WSGI_APP": "predictor:app"})
    assert by_check(report, "handler")["status"] == "ok"
    code_, report = doctor(smc, "serve", env={**env, "SMC_WSGI_APP": "predictor:nope"})
    assert code_ == 1 and "has no attribute 'nope'" in by_check(report, "handler")["message"]


@pytest.mark.parametrize(("source", "status"), [("app = lambda scope, receive, send: None\n", "ok"),
                                                ("import no_such_module_xyz\n", "fail")], ids=["good", "broken"])
def test_doctor_imports_the_asgi_app_serve_will_import(smc, tmp_path, source, status):
    """An app in the image's code dir, no model: doctor looked in /opt/ml/model/code, warned about
    inference.py and model.tar.gz and passed (rc 0) an image whose `serve` then failed (issue 24
    item 3). It now imports the app from where serve will (config/serve.py's one rule)."""
    base = tmp_path / "ml"
    (base / "code").mkdir(parents=True)
    (base / "code" / "main.py").write_text(source)
    code, report = doctor(smc, "serve", env={"SAGEMAKER_BASE_DIR": str(base), "SMC_NGINX": NGINX,
                                             "SMC_ASGI_APP": "main:app"})
    finding = by_check(report, "handler")
    assert finding["status"] == status, finding
    assert (code == 0) == (status == "ok"), report
    if status == "fail":
        assert "ModuleNotFoundError" in finding["message"], finding


def test_no_entry_point_does_not_tell_a_serving_image_to_name_train_py(smc, tmp_path):
    """doctor on a serve-only image suggested SAGEMAKER_PROGRAM=train.py, which serve would then
    read as its handler's name (issue 24 item 8)."""
    base = tmp_path / "ml"
    (base / "code").mkdir(parents=True)
    code, report = doctor(smc, env={"SAGEMAKER_BASE_DIR": str(base), "SMC_NGINX": NGINX})
    finding = by_check(report, "entry_point")
    assert finding["status"] == "warn" and "SAGEMAKER_PROGRAM=train.py" not in finding["hint"], finding
    assert "smc doctor serve" in finding["hint"], finding


# -- which Python runs user code (supervisor_app/interpreter.py) --------------------------------------
def _serve_tree(base: Path, handler: str) -> dict[str, str]:
    (base / "model").mkdir(parents=True)
    (base / "code").mkdir()
    shutil.copy(ROOT / "tests" / "fixtures" / "image_python" / handler, base / "code" / handler)
    return {"SAGEMAKER_BASE_DIR": str(base)}


def test_doctor_imports_the_handler_under_the_python_that_will_serve(smc, tmp_path):
    """inference.py imports tabulate, which only the image's Python has: doctor passes it under that
    Python, names it and its version, and fails it under the embedded one."""
    from tests.image_pythons import image_python

    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    env = _serve_tree(tmp_path / "ml", "inference.py")
    code, report = doctor(smc, "serve", env={**env, "SMC_PYTHON": str(python)})
    chosen = by_check(report, "python")
    assert chosen["status"] == "ok" and "Python 3.11." in chosen["message"] and str(python) in chosen["message"]
    handler = by_check(report, "handler")
    assert handler["status"] == "ok" and f"under {python}" in handler["message"], handler
    code, report = doctor(smc, "serve", env={**env, "SMC_PYTHON": "embedded"})
    handler = by_check(report, "handler")
    assert handler["status"] == "fail" and "tabulate" in handler["message"], handler
    assert "embedded" in by_check(report, "python")["message"]


def test_doctor_warns_when_smc_prefix_packages_will_not_be_seen(smc, tmp_path):
    from tests.image_pythons import image_python

    python = image_python("3.11")
    if python is None:
        pytest.skip("no CPython 3.11")
    prefix = tmp_path / "prefix"
    (prefix / "lib" / "python3.11" / "site-packages" / "pandas-2.2.3.dist-info").mkdir(parents=True)
    env = {**_serve_tree(tmp_path / "ml", "inference.py"), "SMC_PREFIX": str(prefix)}
    _, report = doctor(smc, "serve", env={**env, "SMC_PYTHON": str(python)})
    found = by_check(report, "python_prefix_packages")
    assert found["status"] == "warn" and "pandas" in found["message"] and "SMC_PYTHON=embedded" in found["hint"]
    _, report = doctor(smc, "serve", env={**env, "PATH": f"{python.parent}:{os.environ['PATH']}"})
    chosen = by_check(report, "python")  # the default rule keeps them: no warning, the reason named
    assert "smc's embedded Python" in chosen["message"] and "SMC_PREFIX" in chosen["message"], chosen
    assert not [f for f in report["findings"] if f["check"] == "python_prefix_packages"]


def test_doctor_fails_a_python_too_old_to_serve(smc, tmp_path):
    from tests.image_pythons import find_cpython

    old = find_cpython("3.8")
    if old is None:
        pytest.skip("no CPython 3.8")
    env = _serve_tree(tmp_path / "ml", "inference.py")
    code, report = doctor(smc, "serve", env={**env, "SMC_PYTHON": str(old)})
    found = by_check(report, "python")
    assert code == 1 and found["status"] == "fail" and "3.9 or newer" in found["message"], found
