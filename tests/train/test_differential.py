"""smc train against the real sagemaker-training 5.1.4: same /opt/ml tree, same script, and the
argv and SM_* environment the script saw must be the same. Every allowed difference is spelled
out below with its reason."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from trainkit import JOBS, clean_env, make_job, train_env, write_json

from supervisor_app.cpus import available_cpus

pytestmark = pytest.mark.toolkit

CASES = ["single_host", "two_hosts", "many_channels", "hp_types", "no_hyperparameters"]
# Set for both launchers: the toolkit would otherwise wait up to 15 min for algo-1/algo-2 in DNS.
COMMON = {"SM_STUDIO_LOCAL_MODE": "true", "AWS_DEFAULT_REGION": "eu-west-1", "TRAINING_JOB_NAME": "diff-job"}
PER_CASE = {"no_hyperparameters": {"SAGEMAKER_PROGRAM": "dump_env.py"}}


def _prepare(tmp_path: Path, case: str, name: str) -> Path:
    base = make_job(tmp_path, case, name)
    shutil.copy(JOBS / "dump_env.py", base / "code" / "dump_env.py")
    return base


def _seen(base: Path) -> dict:
    seen = json.loads((base / "output/data/seen.json").read_text())
    text = json.dumps(seen).replace(str(base), "<BASE>")
    return json.loads(text)


def _run_toolkit(toolkit_train: Path, base: Path, extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = clean_env()
    env.update(COMMON, SAGEMAKER_BASE_DIR=str(base), **extra)
    env["HOME"] = str(base.parent)  # no ~/.aws/config region for boto3
    return subprocess.run(
        [str(toolkit_train)], env=env, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("case", CASES)
def test_differential_script_sees_what_the_toolkit_gives(case, tmp_path, smc, toolkit_train):
    extra = PER_CASE.get(case, {})
    tk_base = _prepare(tmp_path, case, "toolkit")
    if case == "no_hyperparameters":
        # The toolkit crashes without the file ("Framework Error: FileNotFoundError", exit 2);
        # smc treats a missing file as {}. Compare smc against the toolkit given {}.
        crashed = _run_toolkit(toolkit_train, tk_base, extra)
        assert crashed.returncode == 2 and "hyperparameters.json" in (tk_base / "output/failure").read_text()
        (tk_base / "output/failure").unlink()
        write_json(tk_base / "input/config/hyperparameters.json", {})
    tk = _run_toolkit(toolkit_train, tk_base, extra)
    assert tk.returncode == 0, tk.stderr[-3000:]

    smc_base = _prepare(tmp_path, case, "smc")
    env = train_env(smc_base, **COMMON, **extra)
    env["HOME"] = str(smc_base.parent)
    done = smc("train", env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "dump_env done" in done.stdout and "dump_env done" in tk.stdout

    expected, got = _seen(tk_base), _seen(smc_base)
    assert got["argv"] == expected["argv"]
    assert got["cwd"] == expected["cwd"] == "<BASE>/code"
    assert (smc_base / "output/success").read_text() == (tk_base / "output/success").read_text() == ""

    exp_env, got_env = dict(expected["env"]), dict(got["env"])
    # Justified differences, each checked rather than dropped:
    # 1. PYTHONPATH: both start with the code dir; the toolkit then lists its launcher's own
    #    sys.path (its venv and stdlib), which means nothing to the image's python.
    exp_path, got_path = exp_env.pop("PYTHONPATH").split(":"), got_env.pop("PYTHONPATH").split(":")
    assert exp_path[0] == got_path[0] == "<BASE>/code"
    assert got_path == ["<BASE>/code"]
    # 2. PYTHONUNBUFFERED=1: smc sets it so metric lines reach the log at once (the toolkit's
    #    generic `train` leaves output block-buffered on pipes).
    assert got_env.pop("PYTHONUNBUFFERED") == "1" and "PYTHONUNBUFFERED" not in exp_env
    # 3. CPUs: smc counts the CPUs this process may use (affinity, cgroup quota); the toolkit
    #    counts the host's. Equal here unless the test runs under a CPU limit.
    cpus = available_cpus()
    assert got_env["SM_NUM_CPUS"] == str(cpus)
    if exp_env["SM_NUM_CPUS"] != str(cpus):
        assert cpus < int(exp_env["SM_NUM_CPUS"])
        for key in ("SM_NUM_CPUS",):
            exp_env[key] = str(cpus)
        tenv = json.loads(exp_env["SM_TRAINING_ENV"])
        tenv["num_cpus"] = cpus
        exp_env["SM_TRAINING_ENV"] = json.dumps(tenv, sort_keys=True, separators=(",", ":"))
    for key in sorted(set(exp_env) | set(got_env)):
        assert got_env.get(key) == exp_env.get(key), key
    assert got_env == exp_env
