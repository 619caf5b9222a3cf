"""Roots smc may be started in that are not what Docker and SageMaker give it: without /proc,
without /etc/hosts, with a noexec /tmp, read-only. Each either works or fails with an error that
names the cause and the fix: a JSON line from smc once its Python runs, else the message of the
loader or of PyInstaller's bootloader, listed with its fix in docs/images.md (asserted here, so
that table stays true).

Docker always mounts /proc and writes /etc/hosts: those two faults are made by chrooting into the
image's exported root inside new pid, net and mount namespaces (tests need root, as CI has)."""

from __future__ import annotations

import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.images.conftest import docker
from tests.images.conftest import json_events
from tests.images.distros.conftest import chrooted, explain, model_dir, write_job

pytestmark = pytest.mark.docker

# The dynamic loader's words when the bundle it unpacked to $TMPDIR may not be mapped executable.
NOEXEC_MESSAGE = "failed to map segment from shared object"
# PyInstaller's bootloader's words when $TMPDIR cannot be written.
NO_TMP_MESSAGE = "Could not create temporary directory"
STOP_LIMIT_S = 10


def job_mounts(base: Path) -> list[str]:
    return [arg for sub in ("input", "model", "output") for arg in ("-v", f"{base / sub}:/opt/ml/{sub}")]


def failed_event(result) -> dict:
    """smc's JSON error line of a command that stopped before its work began."""
    events = [
        e for e in json_events(result.stdout + "\n" + result.stderr) if e.get("event") == "command_failed"
    ]
    assert events, f"no command_failed JSON line:\n{explain(result)}"
    return events[0]


def test_noexec_tmp_fails_with_the_loaders_message_and_exec_tmp_or_tmpdir_fix_it(containers, image):
    # Docker's --tmpfs is noexec unless told otherwise; the binary unpacks its libraries there.
    result, _ = containers(image, "version", docker_args=["--tmpfs", "/tmp"])
    assert result.returncode != 0 and NOEXEC_MESSAGE in result.stderr, explain(result)
    result, _ = containers(image, "version", docker_args=["--tmpfs", "/tmp:exec"])
    assert result.returncode == 0, explain(result)
    result, _ = containers(image, "version", docker_args=["--tmpfs", "/tmp", "-e", "TMPDIR=/var/tmp"])
    assert result.returncode == 0, explain(result)


def test_read_only_root_without_a_tmp_mount_fails_with_the_bootloaders_message(containers, image):
    result, _ = containers(image, "version", docker_args=["--read-only"])
    assert result.returncode != 0 and NO_TMP_MESSAGE in result.stderr, explain(result)


def test_read_only_root_with_exec_tmp_trains_and_serves(containers, image, distro, tmp_path):
    read_only = ["--read-only", "--tmpfs", "/tmp:exec"]
    job = write_job(tmp_path / "opt_ml")
    result, _ = containers(
        image, "train", docker_args=[*read_only, *job_mounts(job), "-e", "SAGEMAKER_PROGRAM=report.py"]
    )
    assert result.returncode == 0 and (job / "output" / "success").is_file(), (
        f"train on {distro}:\n{explain(result)}"
    )

    model = model_dir(tmp_path / "model")
    result, box = containers(
        image,
        "serve",
        detach=True,
        publish=True,
        docker_args=[*read_only, "-v", f"{model}:/opt/ml/model", "-e", "SAGEMAKER_PROGRAM=inference.py"],
    )
    assert result.returncode == 0, explain(result)
    box.wait_ready()
    request = urllib.request.Request(
        box.url("/invocations"), data=b"3", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert (response.status, response.read()) == (200, b"6.0"), box.logs()[-4000:]
    stopping = time.monotonic()
    assert docker("stop", "-t", "30", box.name, timeout=60).returncode == 0
    assert box.exit_code() == 0 and time.monotonic() - stopping < STOP_LIMIT_S, box.logs()[-4000:]


def test_without_proc_train_serve_and_doctor_name_the_cause_and_mounting_it_fixes_it(
    distro_roots, distro, tmp_path
):
    root = distro_roots(distro)
    job = write_job(tmp_path / "opt_ml")
    model_dir(job / "model")
    env = {"SAGEMAKER_PROGRAM": "report.py"}

    # The bootloader needs no /proc: commands that need none run.
    result = chrooted(root, ["smc", "version"], mount_proc=False)
    assert result.returncode == 0, explain(result)
    for command in ("train", "serve"):
        result = chrooted(root, ["smc", command], env, mount_proc=False, job=job)
        assert result.returncode == 3, f"smc {command} without /proc:\n{explain(result)}"
        event = failed_event(result)
        assert "/proc is not mounted" in event["error"] and "mount -t proc" in event["hint"], event
    result = chrooted(root, ["smc", "doctor", "--json"], env, mount_proc=False, job=job)
    assert result.returncode == 1, explain(result)
    proc = next(f for f in json.loads(result.stdout)["findings"] if f["check"] == "proc")
    assert proc["status"] == "fail" and "mount -t proc" in proc["hint"], proc

    result = chrooted(root, ["smc", "train"], env, mount_proc=True, job=job)
    assert result.returncode == 0 and (job / "output" / "success").is_file(), explain(result)


SERVE_AND_PROBE = """\
set +e
{command} > {log} 2>&1 &
pid=$!
{python} -c '
import sys, time, urllib.request
deadline = time.monotonic() + 60
while True:
    try:
        with urllib.request.urlopen("http://127.0.0.1:8080/ping", timeout=2) as r:
            break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("no /ping 200 within 60 s")
        time.sleep(0.2)
req = urllib.request.Request("http://127.0.0.1:8080/invocations", data=b"3", headers={{"Content-Type": "text/plain"}})
with urllib.request.urlopen(req, timeout=30) as r:
    print("invocation", r.status, r.read().decode())
'
kill -TERM $pid
wait $pid
echo "serve_exit=$?"
"""


def test_without_etc_hosts_one_host_trains_and_serves_and_two_hosts_name_the_missing_file(
    distro_roots, distro, tmp_path
):
    root = distro_roots(distro)
    assert not (root / "etc" / "hosts").exists()
    job = write_job(tmp_path / "one")
    result = chrooted(root, ["smc", "train"], {"SAGEMAKER_PROGRAM": "report.py"}, mount_proc=True, job=job)
    assert result.returncode == 0, f"train without /etc/hosts on {distro}:\n{explain(result)}"

    log = tmp_path / "serve.log"
    model_dir(job / "model")
    shell = SERVE_AND_PROBE.format(command="{command}", log=log, python=sys.executable)
    result = chrooted(
        root, ["smc", "serve"], {"SAGEMAKER_PROGRAM": "inference.py"}, mount_proc=True, job=job, shell=shell
    )
    story = f"{explain(result)}\n--- serve log\n{log.read_text()[-4000:] if log.exists() else ''}"
    assert "invocation 200 6.0" in result.stdout and "serve_exit=0" in result.stdout, story

    two = write_job(tmp_path / "two", hosts=("algo-1", "algo-2"))
    result = chrooted(
        root,
        ["smc", "train"],
        {"SAGEMAKER_PROGRAM": "report.py", "SMC_HOST_WAIT_SECONDS": "1"},
        mount_proc=True,
        job=two,
    )
    assert result.returncode == 3, explain(result)
    event = failed_event(result)
    assert "no /etc/hosts" in event["error"] and "create /etc/hosts" in event["hint"], event
