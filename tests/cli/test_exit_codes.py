"""One test per row of README's exit-code table, against the frozen binary (issue 9, item 5)."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT, clean_env, free_port

HANDLERS = ROOT / "tests" / "fixtures" / "handlers"


def _train_tree(tmp_path: Path, program: str | None = "train.py", script: str | None = None, mode: int = 0o644) -> dict:
    base = tmp_path / "opt_ml"
    for sub in ("input/config", "input/data", "code", "model", "output"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "input/config/resourceconfig.json").write_text('{"current_host": "algo-1", "hosts": ["algo-1"]}')
    if script is not None:
        path = base / "code" / (program or "train.py")
        path.write_text(script)
        path.chmod(mode)
    env = {"SAGEMAKER_BASE_DIR": str(base), "SMC_LOG_FORMAT": "json", "SMC_PYTHON": sys.executable}
    if program:
        env["SAGEMAKER_PROGRAM"] = program
    return env


def _serve_tree(tmp_path: Path, handler: str | None = "echo", **extra: str) -> dict:
    base = tmp_path / "opt_ml"
    (base / "model").mkdir(parents=True)
    if handler:
        (base / "model" / "code").mkdir()
        shutil.copy(HANDLERS / f"{handler}.py", base / "model" / "code" / "inference.py")
    return {"SAGEMAKER_BASE_DIR": str(base), "SMC_LOG_FORMAT": "json", "SAGEMAKER_BIND_TO_PORT": str(free_port()),
            **extra}


def _run(smc_binary: Path, command: list[str], env: dict, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([str(smc_binary), *command], env={**clean_env(), **env}, capture_output=True, text=True,
                          timeout=timeout)


def test_0_training_succeeded(smc_binary, tmp_path):
    assert _run(smc_binary, ["train"], _train_tree(tmp_path, script="print('ok')\n")).returncode == 0


def test_0_serve_drained_after_a_stop_signal(smc_binary, tmp_path):
    env = _serve_tree(tmp_path)
    proc = subprocess.Popen([str(smc_binary), "serve"], env={**clean_env(), **env},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    port = int(env["SAGEMAKER_BIND_TO_PORT"])
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not _pings(port):
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


def _pings(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"GET /ping HTTP/1.0\r\n\r\n")
            return sock.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def test_1_the_training_script_failed(smc_binary, tmp_path):
    done = _run(smc_binary, ["train"], _train_tree(tmp_path, script="raise SystemExit(1)\n"))
    assert done.returncode == 1


def test_1_serve_loaded_no_model_within_the_startup_timeout(smc_binary, tmp_path):
    env = _serve_tree(tmp_path, SAGEMAKER_STARTUP_TIMEOUT="1", ECHO_LOAD_DELAY_S="30")
    done = _run(smc_binary, ["serve"], env)
    assert done.returncode == 1, done.stdout[-2000:]
    assert "SAGEMAKER_STARTUP_TIMEOUT" in done.stdout + done.stderr


@pytest.mark.parametrize("command", [["frobnicate"], ["train", "extra"], ["serve", "extra"]])
def test_2_bad_command_line(smc_binary, tmp_path, command):
    assert _run(smc_binary, command, {}).returncode == 2


def test_3_a_child_could_not_start_port_taken(smc_binary, tmp_path):
    env = _serve_tree(tmp_path)
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", int(env["SAGEMAKER_BIND_TO_PORT"])))
        taken.listen()
        done = _run(smc_binary, ["serve"], env)
    assert done.returncode == 3
    assert "already in use" in done.stdout + done.stderr


def test_3_a_child_could_not_start_nginx_missing(smc_binary, tmp_path):
    done = _run(smc_binary, ["serve"], _serve_tree(tmp_path, PATH="/nonexistent"))
    assert done.returncode == 3
    assert "nginx not found" in done.stdout + done.stderr


def test_4_user_code_could_not_be_loaded(smc_binary, tmp_path):
    done = _run(smc_binary, ["serve"], _serve_tree(tmp_path, handler="import_error"))
    assert done.returncode == 4


@pytest.mark.parametrize("case", ["no_program", "bad_json", "bad_setting", "no_model_dir"])
def test_5_invalid_configuration(smc_binary, tmp_path, case):
    if case == "no_model_dir":
        env = {"SAGEMAKER_BASE_DIR": str(tmp_path / "nothing"), "SAGEMAKER_BIND_TO_PORT": str(free_port())}
        assert _run(smc_binary, ["serve"], env).returncode == 5
        return
    env = _train_tree(tmp_path, program=None if case == "no_program" else "train.py", script="print(1)\n")
    if case == "bad_json":
        (tmp_path / "opt_ml/input/config/hyperparameters.json").write_text("{nope")
    if case == "bad_setting":
        env["SMC_STOP_GRACE_SECONDS"] = "soon"
    done = _run(smc_binary, ["train"], env)
    assert done.returncode == 5, done.stdout + done.stderr
    if case == "no_program":
        assert (tmp_path / "opt_ml/output/failure").read_text().startswith("no training entry point")


@pytest.mark.parametrize("case", ["exec_format", "missing_interpreter"])
def test_126_entry_point_cannot_be_run(smc_binary, tmp_path, case):
    text = "\x7fELF\0\0garbage" if case == "exec_format" else "#!/no/such/interpreter\n"
    done = _run(smc_binary, ["train"], _train_tree(tmp_path, program="train", script=text, mode=0o755))
    assert done.returncode == 126, done.stdout + done.stderr


def test_127_entry_point_not_found(smc_binary, tmp_path):
    env = _train_tree(tmp_path, program="train.py")
    (tmp_path / "opt_ml/code/other.py").write_text("print(1)\n")
    done = _run(smc_binary, ["train"], env)
    assert done.returncode == 127
    assert (tmp_path / "opt_ml/output/failure").read_text().startswith("entry point 'train.py' not found")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_128_plus_n_stopped_by_signal_n(smc_binary, tmp_path, signum):
    env = _train_tree(tmp_path, script="import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    proc = subprocess.Popen([str(smc_binary), "train"], env={**clean_env(), **env}, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("started"):
            break
    proc.send_signal(signum)
    assert proc.wait(timeout=30) == 128 + signum
    proc.stdout.close()


def test_128_plus_n_training_script_killed_by_a_signal(smc_binary, tmp_path):
    script = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n"
    assert _run(smc_binary, ["train"], _train_tree(tmp_path, script=script)).returncode == 137
