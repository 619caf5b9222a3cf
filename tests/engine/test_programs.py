"""SMC_PROGRAMS: supervisord program files run by the frozen binary beside the handler server,
beside the engine (or as the engine), and beside a training script."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import free_port
from tests.engine.conftest import engine_command
from tests.serve.conftest import Server, install_handler


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_sidecars_beside_the_handler_server_follow_their_own_policy(smc_binary, opt_ml, tmp_path):
    install_handler(opt_ml, "echo")
    conf = _write(tmp_path / "programs.conf", f"""
[supervisord]
nodaemon=true

[program:ticker]
command=sh -c 'echo ticker up; while true; do sleep 0.2; done'
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stopsignal=TERM

[program:crasher]
command=sh -c 'echo crasher dying >&2; exit 3'
startsecs=1
startretries=2
colour=blue

[program:proxy-ish]
command=sh -c 'echo "dir=$PWD env=$GREETING"; sleep 100'
directory={tmp_path}
environment=GREETING="hello %(ENV_HOME)s"
""")
    server = Server(smc_binary, opt_ml, free_port(), {"SMC_PROGRAMS": str(conf)})
    server.wait_ready()
    fatal = server.wait_event("program_fatal", timeout=15, program="crasher")
    assert fatal["start_failures"] == 3 and fatal["startretries"] == 2
    assert server.ping() == 200  # a sidecar giving up never takes the server down
    assert server.invoke({"a": 1}).status == 200
    relayed = server.wait_event("output", component="ticker")
    assert relayed["message"] == "ticker up" and relayed["stream"] == "stdout"
    assert server.wait_event("output", component="crasher")["stream"] == "stderr"
    info = server.wait_event("output", component="proxy-ish")["message"]
    assert info.startswith(f"dir={tmp_path} env=hello /")
    warning = server.events("programs_file_warning")[0]["message"]
    assert "colour" in warning and "crasher" in warning
    # A SIGKILL from elsewhere (this test) is named so, not guessed to be out of memory.
    os.kill(server.wait_event("child_started", child="ticker")["child_pid"], signal.SIGKILL)
    exited = server.wait_event("child_exited", child="ticker")
    assert exited["cause"] == "killed by SIGKILL (not by smc; OOM counter unchanged)", exited
    server.wait_event("child_restarting", child="ticker")
    assert server.stop() == 0
    stopped = {e["child"] for e in server.events("child_exited") if e.get("expected")}
    assert {"ticker", "proxy-ish", "nginx", "gunicorn"} <= stopped


def test_program_named_engine_is_the_engine_and_replaces_the_command(smc_binary, opt_ml, tmp_path):
    port = free_port()
    conf = _write(tmp_path / "supervisord.conf", f"""
[program:engine]
command={engine_command(port)} --warmup-s 0.3
startretries=1

[program:helper]
command=sleep 100
""")
    server = Server(smc_binary, opt_ml, free_port(), {
        "SMC_PROGRAMS": str(conf), "SMC_ENGINE_URL": f"http://127.0.0.1:{port}",
        "SMC_ENGINE_COMMAND": "this-is-replaced"})
    server.wait_ready()
    assert server.invoke({"x": 1}).json()["path"] == "/invocations"
    assert server.events("engine_command_replaced")
    assert server.events("programs_loaded")[0]["sidecars"] == ["helper"]
    assert server.stop() == 0


def test_required_sidecar_giving_up_ends_serve(smc_binary, opt_ml, tmp_path):
    install_handler(opt_ml, "echo")
    conf = _write(tmp_path / "p.conf", """
[program:must]
command=sh -c 'exit 4'
startretries=1
smc_required=true
""")
    server = Server(smc_binary, opt_ml, free_port(), {"SMC_PROGRAMS": str(conf)})
    assert server.wait_exit(30) == 1
    assert "required program must gave up" in server.events("serve_failed")[0]["reason"]


def test_bad_programs_files_name_file_and_line(smc, opt_ml, tmp_path):
    env = {"SAGEMAKER_BASE_DIR": str(opt_ml), "SMC_ENGINE_COMMAND": "true"}
    cases = {
        "syntax.conf": ("[program:a]\ncommand=true\n[program:b\n", "line 3"),
        "header.conf": ("command=true\n[program:a]\n", "line 1"),
        "words.conf": ("[program:a]\ncommand=true\njust words\n", "line 3"),
        "nocommand.conf": ("[program:ok]\ncommand=true\n\n[program:x]\ndirectory=/tmp\n", "[program:x] at line 4"),
        "badsignal.conf": ("[program:x]\ncommand=true\nstopsignal=NOPE\n", "NOPE"),
    }
    for name, (text, expected) in cases.items():
        path = _write(tmp_path / name, text)
        result = smc("serve", env={**env, "SMC_PROGRAMS": str(path)})
        assert result.returncode == 5, (name, result.stderr)
        assert str(path) in result.stderr and expected in result.stderr, (name, result.stderr)
    missing = smc("serve", env={**env, "SMC_PROGRAMS": str(tmp_path / "nope.conf")})
    assert missing.returncode == 5 and "cannot read" in missing.stderr


@pytest.fixture
def shared_dir():
    """A directory any user can write: pytest's tmp_path lives under a root-only parent."""
    path = Path(tempfile.mkdtemp(prefix="smc-programs-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_programs_run_beside_a_training_script(smc, opt_ml, tmp_path, shared_dir):
    # The script waits for both programs to have done their work: otherwise it can end, and the
    # programs be stopped, before a loaded machine has even run `id` in as-nobody.
    shared = shared_dir
    sidecar_flag, nobody_flag = shared / "sidecar-was-here", shared / "nobody-was-here"
    conf = _write(tmp_path / "p.conf", f"""
[program:sidecar]
command=sh -c 'touch {sidecar_flag}; echo sidecar ready; exec sleep 100'

[program:as-nobody]
command=sh -c 'echo "uid=$(id -u)"; touch {nobody_flag}'
user=nobody
startsecs=0
autorestart=false
""")
    (opt_ml / "code" / "train.py").write_text(f"""
import os, time
flags = [{str(sidecar_flag)!r}, {str(nobody_flag)!r}]
deadline = time.time() + 10
while not all(os.path.exists(f) for f in flags) and time.time() < deadline:
    time.sleep(0.05)
print("saw sidecar", os.path.exists(flags[0]))
""")
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text("{}")
    (opt_ml / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"]}))
    started = time.monotonic()
    result = smc("train", env={"SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_PROGRAM": "train.py",
                               "SMC_PROGRAMS": str(conf), "SMC_LOG_FORMAT": "json"}, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "saw sidecar True" in result.stdout
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert any(e.get("component") == "sidecar" and e.get("message") == "sidecar ready" for e in events)
    assert any(e.get("event") == "programs_stopped" for e in events)
    import os
    import pwd

    if os.geteuid() == 0:  # `user` switches users only when smc runs as root
        nobody = pwd.getpwnam("nobody").pw_uid
        assert any(e.get("component") == "as-nobody" and e.get("message") == f"uid={nobody}" for e in events), \
            result.stdout
    assert time.monotonic() - started < 20


def test_a_stop_while_programs_stop_after_a_successful_script_keeps_its_success(smc_binary, opt_ml, tmp_path):
    # The script succeeded; a SIGTERM comes while smc waits for a program that ignores SIGTERM.
    # output/success stays the job's outcome: no output/failure beside it.
    from tests.conftest import clean_env

    conf = _write(tmp_path / "p.conf", """
[program:stubborn]
command=sh -c 'trap "" TERM; echo stubborn up; while true; do sleep 0.1; done'
stopwaitsecs=3
""")
    (opt_ml / "code" / "train.py").write_text("print('trained')\n")
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text("{}")
    (opt_ml / "input" / "config" / "resourceconfig.json").write_text(json.dumps(
        {"current_host": "algo-1", "hosts": ["algo-1"]}))
    env = {**clean_env(), "SAGEMAKER_BASE_DIR": str(opt_ml), "SAGEMAKER_PROGRAM": "train.py",
           "SMC_PROGRAMS": str(conf), "SMC_LOG_FORMAT": "json"}
    proc = subprocess.Popen([str(smc_binary), "train"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, text=True)
    seen = []
    deadline = time.monotonic() + 30
    for line in proc.stdout:
        seen.append(line)
        if '"event":"training_succeeded"' in line or time.monotonic() > deadline:
            break
    assert any('"event":"training_succeeded"' in line for line in seen), "".join(seen)
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=20)
    output = "".join(seen) + rest
    assert proc.returncode == 128 + signal.SIGTERM, output
    assert (opt_ml / "output" / "success").exists(), output
    assert not (opt_ml / "output" / "failure").exists(), (opt_ml / "output" / "failure").read_text()
    assert '"event":"stopped_after_training"' in output, output
