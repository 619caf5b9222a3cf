"""An MPI job across hosts: the master runs mpirun over SSH, the workers serve SSH and wait.

Master: sshd -> wait for every worker's SSH port (JSON line per peer, deadline) -> mpirun,
supervised like any script (signals forwarded, grace, SIGKILL) -> the outcome, with the failing
rank and host read from mpirun's report -> the outcome sent to every worker over SSH.
Worker: sshd -> wait for the master's SSH port -> wait for the outcome file the master writes,
while checking that the master still answers -> exit with the job's code. So a worker exits
non-zero when the job failed, was stopped, or its master vanished, never a blind 0.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app import exitcodes, process
from supervisor_app.config.dist import DistConfig
from supervisor_app.errors import BootError
from supervisor_app.train import cluster as cluster_mod
from supervisor_app.train import runner
from supervisor_app.train.cluster import Cluster
from supervisor_app.train.launchers import background, ssh

_NOTIFY_TIMEOUT_S = 20.0
_POLL_S = 0.25
_MASTER_PROBE_EVERY_S = 1.0
_LOST_MASTER_CODE = exitcodes.FAILURE


@dataclass(frozen=True)
class Result:
    outcome: runner.Outcome
    cause: str | None  # why the job failed, naming host and rank where known


@dataclass(frozen=True)
class Job:
    cluster: Cluster
    dist: DistConfig
    job_name: str
    work_dir: Path  # private, the same path on every host
    environ: dict[str, str]  # the script's environment (without the bundle's libraries)

    @property
    def status_file(self) -> Path:
        return self.work_dir / "status.json"


def missing_programs(path_env: str | None) -> list[str]:
    """What the image lacks for MPI, as Debian package names."""
    missing = []
    if ssh.find_sshd(path_env) is None or shutil.which("ssh", path=path_env) is None:
        missing.append(ssh.SSHD_PACKAGE)
    if shutil.which("mpirun", path=path_env) is None or shutil.which("orted", path=path_env) is None:
        missing.append(ssh.MPI_PACKAGE)
    return missing


def _require_programs(path_env: str | None) -> str:
    missing = missing_programs(path_env)
    if missing:
        raise BootError(
            f"sagemaker_mpi_enabled is set, but the image lacks {' and '.join(missing)} "
            "(sshd, ssh, mpirun and orted must be installed)",
            hint=f"add `RUN apt-get update && apt-get install -y --no-install-recommends {' '.join(missing)}` "
            "to the Dockerfile (smc brings no MPI or SSH of its own)",
        )
    return ssh.find_sshd(path_env) or "sshd"


def _start_ssh(job: Job, log: Any) -> tuple[ssh.SshFiles, subprocess.Popen]:
    sshd = _require_programs(job.environ.get("PATH"))
    files = ssh.prepare(job.work_dir / "ssh", job.dist, job.job_name, job.cluster.hosts)
    child = ssh.start_sshd(sshd, files, job.environ, log)
    time.sleep(0.05)
    ssh.check_sshd_alive(child, job.dist.ssh_port)
    return files, child


# ---- master -------------------------------------------------------------------------------------


def run_master(job: Job, command: list[str], cwd: Path, grace_s: float, log: Any) -> Result:
    files, sshd = _start_ssh(job, log)
    try:
        cluster_mod.wait_for_peers(
            job.cluster.peers,
            job.dist.ssh_port,
            job.dist.peer_wait_s,
            log,
            what="an MPI worker starts sshd within seconds",
        )
        env = dict(job.environ)
        # mpirun starts orted on the workers with `ssh <these args> host orted ...`.
        env["OMPI_MCA_plm_rsh_args"] = f"-F {files.client_config}"
        log.info("mpi_job_started", hosts=list(job.cluster.hosts), command=command)
        started = time.monotonic()
        outcome = runner.run(command, env, cwd, grace_s, log)
        log.info(
            "mpi_job_ended", exit_code=outcome.exit_code, duration_s=round(time.monotonic() - started, 3)
        )
        failed = outcome.exit_code != 0 or outcome.stop_signal is not None
        cause = describe_failure(outcome, job.cluster) if failed else None
        _notify_workers(job, files, outcome, cause, log)
        if failed:
            # The failure file keeps the failing rank's own last lines rather than mpirun's
            # banner, which the cause already sums up.
            outcome = dataclasses.replace(outcome, stderr_tail=failed_rank_stderr(outcome.stderr_tail))
        return Result(outcome, cause)
    finally:
        background.stop(sshd)


_RANK_EXIT = re.compile(r"Process name:\s*\[\[\d+,\d+\],(\d+)\]\s*Exit code:\s*(\d+)")
_RANK_ABORT = re.compile(r"MPI_ABORT was invoked on rank (\d+) in communicator \S+\s+with errorcode (\d+)")
_RANK_SIGNAL = re.compile(r"process rank (\d+) with PID \d+ on node (\S+) exited on signal (\d+)")
_LOST_DAEMON = re.compile(r"Remote daemon:\s*\[\[\d+,\d+\],\d+\] on node (\S+)")
_DAEMON_ON_NODE = re.compile(r"daemon on node (\S+?)[ .,\n]")
_SSH_DENIED = re.compile(r"\S+@(\S+?): Permission denied")
_SSH_CONNECT = re.compile(r"ssh: connect to host (\S+) port \d+: (.+)")
_SSH_RESOLVE = re.compile(r"ssh: Could not resolve hostname (\S+?):")
# Open MPI warns for every -x of an unset variable (the toolkit's -x LD_LIBRARY_PATH): noise.
_UNSET_WARNING = re.compile(rb"^.*Warning: could not find environment variable .*\n?", re.MULTILINE)


def describe_failure(outcome: runner.Outcome, cluster: Cluster) -> str:
    """One line that names the rank, its host and the cause, from mpirun's own report."""
    text = outcome.stderr_tail.decode("utf-8", "replace")
    if outcome.stop_signal is not None:
        how = process.signal_name(outcome.stop_signal)
        return f"MPI job stopped: smc on the master {cluster.master} received {how}"
    match = _RANK_ABORT.search(text)
    if match:
        rank, code = int(match.group(1)), int(match.group(2))
        host = cluster.host_of_rank(rank) or "an unknown host"
        return f"MPI job failed: rank {rank} on {host} aborted the job (MPI_Abort, error code {code})"
    match = _RANK_EXIT.search(text)
    if match:
        rank, code = int(match.group(1)), int(match.group(2))
        host = cluster.host_of_rank(rank) or "an unknown host"
        return f"MPI job failed: rank {rank} on {host} exited with code {code} (mpirun exit code {outcome.exit_code})"
    match = _RANK_SIGNAL.search(text)
    if match:
        rank, host, sig = int(match.group(1)), match.group(2), int(match.group(3))
        how = f"killed by {process.signal_name(sig)}"
        if sig == signal.SIGKILL:
            # Another host's memory cgroup is not this one's to read: say so instead of guessing OOM.
            how += f" (mpirun does not say by whom; {host}'s own log tells whether its OOM killer did it)"
        return f"MPI job failed: rank {rank} on {host} was {how}"
    match = _SSH_DENIED.search(text)
    if match:
        return (
            f"MPI job failed: the master {cluster.master} cannot log in to {match.group(1)} over SSH "
            "(Permission denied): the hosts do not share a key; give every host the same "
            "SMC_MPI_SSH_SECRET or SMC_MPI_SSH_KEY_FILE"
        )
    match = _SSH_CONNECT.search(text) or _SSH_RESOLVE.search(text)
    if match:
        why = match.group(2).strip() if match.re is _SSH_CONNECT else "name does not resolve"
        return f"MPI job failed: the master {cluster.master} cannot reach {match.group(1)} over SSH ({why})"
    match = _LOST_DAEMON.search(text) or _DAEMON_ON_NODE.search(text)
    if match:
        host = match.group(1)
        return (
            f"MPI job failed: mpirun lost contact with host {host} (its container stopped or the "
            f"network failed); {_ranks_of(cluster, host)} gone"
        )
    return f"MPI job failed: mpirun {outcome.cause()}"


_TAGGED = re.compile(rb"^\[\d+,(\d+)\]<stderr>:(.*)$", re.MULTILINE)


def failed_rank_stderr(tail: bytes) -> bytes:
    """The stderr lines (--tag-output: `[job,rank]<stderr>:text`) of the rank mpirun reported
    as failed, else of every rank; the whole tail when no rank wrote to stderr."""
    tail = _UNSET_WARNING.sub(b"", tail)
    text = tail.decode("utf-8", "replace")
    match = _RANK_ABORT.search(text) or _RANK_EXIT.search(text) or _RANK_SIGNAL.search(text)
    lines = [(int(rank), line) for rank, line in _TAGGED.findall(tail)]
    if match:
        rank = int(match.group(1))
        own = [line for r, line in lines if r == rank]
        if own:
            return b"\n".join(b"[rank %d] %s" % (rank, line) for line in own)
    if lines:
        return b"\n".join(b"[rank %d] %s" % (r, line) for r, line in lines)
    return tail


def _ranks_of(cluster: Cluster, host: str) -> str:
    if host not in cluster.hosts:
        return "its ranks are"
    first = cluster.hosts.index(host) * cluster.processes_per_host
    last = first + cluster.processes_per_host - 1
    return f"its rank {first} is" if first == last else f"its ranks {first}-{last} are"


def _notify_workers(
    job: Job, files: ssh.SshFiles, outcome: runner.Outcome, cause: str | None, log: Any
) -> None:
    """Tell every worker how the job ended, in parallel, each bounded in time."""
    code = exitcodes.from_signal(outcome.stop_signal) if outcome.stop_signal else outcome.exit_code
    status = json.dumps({"exit_code": code, "cause": cause, "master": job.cluster.master})
    target = shlex.quote(str(job.status_file))
    staged = shlex.quote(f"{job.status_file}.part")
    remote = f"mkdir -p {shlex.quote(str(job.work_dir))} && cat > {staged} && mv {staged} {target}"
    threads = [
        threading.Thread(target=_notify, args=(files, job.environ, host, remote, status, log), daemon=True)
        for host in job.cluster.peers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(_NOTIFY_TIMEOUT_S + 1)


def _notify(
    files: ssh.SshFiles, environ: Mapping[str, str], host: str, remote: str, status: str, log: Any
) -> None:
    try:
        done = subprocess.run(
            files.ssh_command(host, remote),
            input=status,
            capture_output=True,
            text=True,
            timeout=_NOTIFY_TIMEOUT_S,
            env=_ssh_env(environ),
            check=False,
        )
    except subprocess.TimeoutExpired:
        log.warning(
            "worker_not_told_outcome", host=host, reason=f"ssh timed out after {_NOTIFY_TIMEOUT_S:g} s"
        )
        return
    if done.returncode != 0:
        log.warning(
            "worker_not_told_outcome", host=host, reason=done.stderr.strip()[-300:] or done.returncode
        )
    else:
        log.info("worker_told_outcome", host=host)


def _ssh_env(environ: Mapping[str, str]) -> dict[str, str]:
    return {"PATH": environ.get("PATH", "/usr/bin:/bin"), "HOME": environ.get("HOME", "/root")}


# ---- worker -------------------------------------------------------------------------------------


def run_worker(job: Job, log: Any) -> Result:
    _clear_status(job.status_file)
    _, sshd = _start_ssh(job, log)
    try:
        master = job.cluster.master
        port = job.dist.ssh_port
        cluster_mod.wait_for_peers(
            (master,), port, job.dist.peer_wait_s, log, what=f"the master {master} starts sshd first thing"
        )
        log.info("mpi_worker_waiting", master=master, status_file=str(job.status_file))
        return _wait_for_outcome(job, sshd, log)
    finally:
        background.stop(sshd)


def _clear_status(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.parent.chmod(0o700)
    for stale in (path, Path(f"{path}.part")):
        stale.unlink(missing_ok=True)


def _wait_for_outcome(job: Job, sshd: subprocess.Popen, log: Any) -> Result:
    master, port = job.cluster.master, job.dist.ssh_port
    last_answer = time.monotonic()
    next_probe = last_answer
    while True:
        status = _read_status(job.status_file)
        if status is not None:
            code = int(status.get("exit_code", _LOST_MASTER_CODE))
            cause = status.get("cause") or None
            log.info("mpi_outcome_received", master=master, exit_code=code, cause=cause)
            if code != 0 and cause:
                cause = f"{cause} (reported by the master {master})"
            return Result(_outcome(code), cause)
        if sshd.poll() is not None:
            raise BootError(
                f"sshd exited with code {sshd.returncode} while the MPI job ran",
                hint="see sshd's message above",
            )
        now = time.monotonic()
        if now >= next_probe:
            next_probe = now + _MASTER_PROBE_EVERY_S
            if cluster_mod.probe(master, port) is None:
                last_answer = now
            elif now - last_answer > job.dist.master_lost_s:
                cause = (
                    f"MPI job lost: the master {master} stopped answering on port {port} for "
                    f"{job.dist.master_lost_s:g} s before it reported the job's outcome (its container "
                    "stopped or failed); see the master's log"
                )
                log.error("mpi_master_lost", master=master, port=port, silent_s=round(now - last_answer, 1))
                return Result(_outcome(_LOST_MASTER_CODE), cause)
        time.sleep(_POLL_S)


def _read_status(path: Path) -> Mapping[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"exit_code": _LOST_MASTER_CODE, "cause": f"unreadable MPI outcome file {path}"}
    return data if isinstance(data, dict) else None


def _outcome(code: int) -> runner.Outcome:
    return runner.Outcome(exit_code=code, stop_signal=None, killed_after_grace=False, stderr_tail=b"")
