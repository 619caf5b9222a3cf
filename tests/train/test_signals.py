"""Stopping and reaping: SIGTERM reaches the script's whole process group, SIGKILL follows the
grace period, smc exits 128+n, and orphans never stay zombies (smc as PID 1 in a namespace)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from trainkit import clean_env, failure, make_job, script, train_env

PARENT_AND_CHILD = """
import os, signal, subprocess, sys, time
out = os.environ['SM_OUTPUT_DATA_DIR']
child_code = (
    "import os, signal, sys, time\\n"
    "def stop(*a):\\n"
    "    open(os.path.join(sys.argv[1], 'child_term'), 'w').write('x')\\n"
    "    sys.exit(0)\\n"
    "signal.signal(signal.SIGTERM, stop)\\n"
    "open(os.path.join(sys.argv[1], 'child_ready'), 'w').write('x')\\n"
    "time.sleep(60)\\n"
)
child = subprocess.Popen([sys.executable, '-c', child_code, out])
def stop(*a):
    open(os.path.join(out, 'parent_term'), 'w').write('x')
    child.wait()
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
time.sleep(60)
"""

IGNORES_STOP = """
import os, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
signal.signal(signal.SIGINT, signal.SIG_IGN)
open(os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], 'child_ready'), 'w').write('x')
time.sleep(60)
"""


def _start(smc_binary: Path, base: Path, **extra: str) -> subprocess.Popen:
    env = clean_env()
    env.update(train_env(base, SAGEMAKER_PROGRAM="train.py", **extra))
    return subprocess.Popen(
        [str(smc_binary), "train"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for(path: Path, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            pytest.fail(f"{path} never appeared")
        time.sleep(0.05)


def test_sigterm_reaches_the_scripts_whole_process_group(smc_binary, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", PARENT_AND_CHILD)
    proc = _start(smc_binary, base)
    _wait_for(base / "output/data/child_ready")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert (base / "output/data/parent_term").exists()
    assert (base / "output/data/child_term").exists()  # the grandchild got it too
    assert failure(base).startswith("Training stopped: smc received SIGTERM; train.py ended with exit code 0")
    events = [
        json.loads(line)["event"] for line in out.splitlines() + err.splitlines() if line.startswith("{")
    ]
    assert "stop_requested" in events and "stop_grace_expired" not in events


def test_sigkill_follows_the_grace_period_for_a_script_ignoring_sigterm(smc_binary, tmp_path):
    base = make_job(tmp_path)
    script(base, "train.py", IGNORES_STOP)
    proc = _start(smc_binary, base, SMC_STOP_GRACE_SECONDS="1")
    _wait_for(base / "output/data/child_ready")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    elapsed = time.monotonic() - started
    assert proc.returncode == 128 + signal.SIGINT
    assert 0.9 <= elapsed < 10
    assert failure(base).startswith(
        "Training stopped: smc received SIGINT; train.py killed with SIGKILL after the 1 s grace period"
    )
    assert '"event":"stop_grace_expired"' in out + err


@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is required")
def test_orphans_are_reaped_when_smc_is_pid_1(smc_binary, tmp_path):
    base = make_job(tmp_path)
    # Double fork: the grandchildren's parent exits at once, so they are re-parented to the
    # subreaper (smc) and, when they exit, only smc can reap them.
    script(
        base,
        "train.py",
        """
import json, os, time
for delay in (0.1, 0.2, 0.3):
    if os.fork() == 0:
        if os.fork() == 0:
            time.sleep(delay)
            os._exit(0)
        os._exit(0)
    os.wait()
time.sleep(1.5)
zombies = []
for entry in os.listdir('/proc'):
    if entry.isdigit():
        try:
            stat = open(f'/proc/{entry}/stat').read()
        except OSError:
            continue
        if stat.rsplit(')', 1)[1].split()[0] == 'Z':
            zombies.append(stat)
json.dump({'zombies': zombies, 'pid': os.getpid()},
          open(os.path.join(os.environ['SM_OUTPUT_DATA_DIR'], 'zombies.json'), 'w'))
""",
    )
    env = clean_env()
    env.update(train_env(base, SAGEMAKER_PROGRAM="train.py"))
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", str(smc_binary), "train"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads((base / "output/data/zombies.json").read_text())
    assert seen["pid"] > 1  # really inside the new PID namespace, below smc
    assert seen["zombies"] == []


def test_stop_before_the_script_starts_still_reports_and_exits_128_plus_n(smc_binary, tmp_path):
    from trainkit import write_json

    base = make_job(tmp_path)
    write_json(
        base / "input/config/resourceconfig.json",
        {"current_host": "algo-1", "hosts": ["algo-1", "algo-smc-unresolvable.invalid"]},
    )
    script(base, "train.py", "print('ran')\n")
    proc = _start(smc_binary, base, SMC_HOST_WAIT_SECONDS="60")
    deadline = time.monotonic() + 20
    for line in proc.stdout:  # wait until smc is in its DNS wait
        if '"event":"host_not_resolvable_yet"' in line or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    assert failure(base) == "Training stopped: smc received SIGTERM while no training script was running"
