"""Running the entry point through the frozen binary: kinds, exit codes, output, failure file."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from trainkit import clean_env, failure, hyperparameters, log_events, make_job, script, train_env


def _run(smc, base, **extra):
    return smc("train", env=train_env(base, **extra), timeout=120)


def test_success_writes_empty_success_file_and_no_failure(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py")
    script(base, "train.py", "print('epoch=1 train_mse=0.5;')\n")
    done = _run(smc, base)
    assert done.returncode == 0
    assert "epoch=1 train_mse=0.5;\n" in done.stdout.splitlines(keepends=True)
    assert (base / "output/success").read_text() == ""
    assert not (base / "output/failure").exists()
    assert log_events(done.stdout)[-1]["event"] == "training_succeeded"


def test_script_exit_code_3_is_mirrored_with_cause_first_and_stderr_tail(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", "import sys\nprint('bad input row 7', file=sys.stderr)\nsys.exit(3)\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 3
    assert "bad input row 7" in done.stderr  # passed through
    text = failure(base)
    assert text.startswith("Training script train.py failed: exit code 3")
    assert text.endswith("bad input row 7")
    error = next(e for e in log_events(done.stdout, done.stderr) if e["event"] == "training_failed")
    assert error["exit_code"] == 3


def test_script_killed_by_sigkill_from_elsewhere_is_not_called_out_of_memory(smc, tmp_path):
    # The memory cgroup's oom_kill counter did not grow: no guess at OOM (the OOM case itself:
    # tests/images/test_train_oom_docker.py).
    base = make_job(tmp_path)
    script(base, "train.py", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 137
    assert failure(base).startswith(
        "Training script train.py failed: killed by SIGKILL (not by smc; OOM counter unchanged)"
    ), failure(base)


def test_user_failure_file_is_kept(smc, tmp_path):
    base = make_job(tmp_path)
    script(
        base,
        "train.py",
        "import os, sys\n"
        "open(os.path.join(os.environ['SM_OUTPUT_DIR'], 'failure'), 'w').write('my own reason')\n"
        "sys.exit(2)\n",
    )
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 2
    assert failure(base) == "my own reason"


def test_stderr_flood_passes_through_and_failure_file_stays_under_1024_bytes(smc, tmp_path):
    base = make_job(tmp_path)
    script(
        base,
        "train.py",
        "import sys\n"
        "line = 'x' * 99 + '\\n'\n"
        "for i in range(60000):\n    sys.stderr.write(line)\n"  # 6 MB
        "sys.stderr.write('LAST LINE\\n')\nsys.exit(1)\n",
    )
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py")
    assert done.returncode == 1
    assert done.stderr.count("x" * 99 + "\n") == 60000
    data = (base / "output/failure").read_bytes()
    assert len(data) <= 1024
    text = data.decode()
    assert text.startswith("Training script train.py failed: exit code 1")
    assert text.endswith("LAST LINE")


def test_stdout_is_unbuffered_lines_arrive_while_the_script_runs(smc_binary, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", "import time\nprint('epoch=1 loss=0.25;')\ntime.sleep(30)\n")
    env = clean_env()
    env.update(train_env(base, SAGEMAKER_PROGRAM="train.py", SMC_STOP_GRACE_SECONDS="1"))
    proc = subprocess.Popen([str(smc_binary), "train"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if line == "epoch=1 loss=0.25;\n":
                break
        else:
            pytest.fail("metric line did not arrive while the script was running")
        assert proc.poll() is None
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_shell_entry_point_with_and_without_shebang(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, epochs=2, name="a b")
    script(base, "run.sh", 'echo "sh args: $0 $1 $2 [$4]"\n')  # no #!, not executable: run by /bin/sh
    done = _run(smc, base, SAGEMAKER_PROGRAM="run.sh")
    assert done.returncode == 0, done.stderr
    assert "sh args: ./run.sh --epochs 2 [a b]" in done.stdout
    base2 = make_job(tmp_path, name="job2")
    script(base2, "run.sh", '#!/bin/bash\necho "bash $BASH_VERSION" | cut -c1-4\n')
    done = _run(smc, base2, SAGEMAKER_PROGRAM="run.sh")
    assert done.returncode == 0, done.stderr
    assert "bash" in done.stdout


def test_other_executable_runs_directly_and_is_made_executable_like_the_toolkit(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, k=1)
    path = script(base, "train", '#!/bin/sh\necho "cmd $0 $*"\n', mode=0o644)
    done = _run(smc, base, SAGEMAKER_PROGRAM="train")
    assert done.returncode == 0, done.stderr
    assert "cmd ./train -k 1" in done.stdout
    assert os.access(path, os.X_OK)


def test_entry_point_that_is_not_an_executable_program_is_a_clear_error(smc, tmp_path):
    base = make_job(tmp_path)
    (base / "code" / "train").write_bytes(b"\x7fELF\x00\x00garbage\x00")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train")
    assert done.returncode == 126
    text = failure(base)
    assert text.startswith("cannot start entry point 'train': not an executable program (exec format error")
    assert "chmod +x" in text


def test_missing_interpreter_on_shebang_is_named(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train", "#!/no/such/python\nprint(1)\n", mode=0o755)
    done = _run(smc, base, SAGEMAKER_PROGRAM="train")
    assert done.returncode == 126
    assert "the interpreter on its #! line does not exist" in failure(base)


def test_embedded_interpreter_runs_py_when_asked(smc, tmp_path):
    base = make_job(tmp_path)
    hyperparameters(base, lr=0.5)
    script(base, "train.py", "import sys\nprint('argv', sys.argv)\nimport helper\nprint(helper.VALUE)\n")
    script(base, "helper.py", "VALUE = 'sibling import works'\n")
    done = _run(
        smc, base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON="embedded", SMC_PREFIX=str(tmp_path / "prefix")
    )
    assert done.returncode == 0, done.stderr
    assert "argv ['train.py', '--lr', '0.5']" in done.stdout
    assert "sibling import works" in done.stdout
    started = next(e for e in log_events(done.stdout) if e["event"] == "training_started")
    assert started["embedded_python"] is True


# ---- requirements.txt and packages ----------------------------------------------------------


def _wheel(directory: Path, name: str = "tinypkg", value: str = "42") -> Path:
    """A minimal pure-Python wheel, made by hand so the test needs no network."""
    files = {
        f"{name}/__init__.py": f"VALUE = {value}\n",
        f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n",
        f"{name}-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: smc-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}-1.0.dist-info/RECORD,,")
    files[f"{name}-1.0.dist-info/RECORD"] = "\n".join(record) + "\n"
    wheel = directory / f"{name}-1.0-py3-none-any.whl"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    wheel.write_bytes(buffer.getvalue())
    return wheel


@pytest.fixture(scope="module")
def image_python(tmp_path_factory) -> Path:
    """A throwaway venv standing in for the image's python (pip installs land there)."""
    venv = tmp_path_factory.mktemp("imagepy") / "venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base_python, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv / "bin" / "python"


def test_requirements_installed_with_image_pip_before_the_script(smc, tmp_path, image_python):
    base = make_job(tmp_path)
    wheel = _wheel(base / "code")
    (base / "code" / "requirements.txt").write_text(f"./{wheel.name}\n")
    script(base, "train.py", "import tinypkg\nprint('tinypkg', tinypkg.VALUE)\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON=str(image_python))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tinypkg 42" in done.stdout
    assert [e["event"] for e in log_events(done.stdout) if e["event"].startswith("pip_")] == [
        "pip_install_started",
        "pip_install_finished",
    ]


def test_requirements_installed_with_embedded_pip_into_the_prefix(smc, tmp_path):
    base = make_job(tmp_path)
    wheel = _wheel(base / "code", value="7")
    (base / "code" / "requirements.txt").write_text(f"./{wheel.name}\n")
    script(base, "train.py", "import tinypkg\nprint('tinypkg', tinypkg.VALUE, tinypkg.__file__)\n")
    prefix = tmp_path / "prefix"
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON="embedded", SMC_PREFIX=str(prefix))
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"tinypkg 7 {prefix}/lib/python3" in done.stdout


def test_failed_requirements_install_fails_the_job_with_pip_error(smc, tmp_path, image_python):
    base = make_job(tmp_path)
    (base / "code" / "requirements.txt").write_text("./no-such-file-1.0-py3-none-any.whl\n")
    script(base, "train.py", "print('should not run')\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON=str(image_python))
    assert done.returncode == 1
    assert "should not run" not in done.stdout
    text = failure(base)
    assert text.startswith("pip install of requirements.txt failed (exit code 1)")
    assert "no-such-file-1.0-py3-none-any.whl" in text  # pip's own words
    assert len(text.encode()) <= 1024


def test_package_code_dir_is_installed_and_run_as_a_module(smc, tmp_path, image_python):
    base = make_job(tmp_path)
    hyperparameters(base, epochs=1)
    script(
        base,
        "setup.py",
        "from setuptools import setup\nsetup(name='mytrainer', version='1.0', py_modules=['train'])\n",
    )
    script(base, "train.py", "import sys\nprint('module', __name__, sys.argv[1:])\n")
    done = _run(smc, base, SAGEMAKER_PROGRAM="train.py", SMC_PYTHON=str(image_python))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "module __main__ ['--epochs', '1']" in done.stdout
    started = next(e for e in log_events(done.stdout) if e["event"] == "training_started")
    assert started["kind"] == "package" and started["command"][1:3] == ["-m", "train"]


def test_text_command_without_shebang_runs_with_sh_as_a_shell_would(smc, tmp_path):
    base = make_job(tmp_path)
    script(base, "train", 'echo "plain sh $0"\n')
    done = _run(smc, base, SAGEMAKER_PROGRAM="train")
    assert done.returncode == 0, done.stderr
    assert "plain sh ./train" in done.stdout
    assert any(e["event"] == "entry_point_run_with_sh" for e in log_events(done.stdout))
