"""Checks of the container itself: temp dir, user, nginx, the port, labels the env implies."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from supervisor_app import process
from supervisor_app.config import Config
from supervisor_app.config.doctor import DoctorConfig
from supervisor_app.config.serve import ServeConfig
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.doctor.labels import BIND_TO_PORT_LABEL, MULTI_MODEL_LABEL
from supervisor_app.errors import SmcError

DEFAULT_PORT = 8080


def mount_options(path: Path) -> tuple[str, set[str]]:
    """(mount point, options) of the filesystem holding path, from /proc/self/mountinfo."""
    best, options = "/", set()
    target = str(path.resolve())
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return best, options
    for line in lines:
        fields = line.split()
        if len(fields) < 6:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, options = point, set(fields[5].split(","))
    return best, options


def check_proc() -> Finding:
    from supervisor_app import rootfs  # the very check train and serve make before they start

    why = rootfs.proc_missing()
    if why is not None:
        return fail("proc", f"{why}: train and serve refuse to start without it", rootfs.PROC_HINT, "/proc")
    return ok("proc", "/proc is mounted", "/proc")


def check_tmp_dir(config: Config) -> Finding:
    tmp = config.tmp_dir
    hint = (
        "the one-file binary unpacks itself there on every start: give the container a writable, "
        "exec-mounted temp dir, e.g. `docker run --tmpfs /tmp:exec ...`, or set TMPDIR to one"
    )
    if not tmp.is_dir():
        return fail("tmp_dir", f"temp dir {tmp} does not exist", hint, str(tmp))
    try:
        with tempfile.NamedTemporaryFile(dir=tmp):
            pass
    except OSError as exc:
        return fail("tmp_dir", f"temp dir {tmp} is not writable: {exc.strerror}", hint, str(tmp))
    point, options = mount_options(tmp)
    if "noexec" in options:
        return fail("tmp_dir", f"temp dir {tmp} is on a noexec mount ({point})", hint, str(tmp))
    return ok("tmp_dir", f"{tmp} is writable and allows exec", str(tmp))


def check_user(serve: ServeConfig | None) -> Finding:
    uid = os.getuid()
    if uid == 0:
        return ok("user", "running as root (as SageMaker runs containers)")
    if serve is not None and serve.port < 1024:
        return fail(
            "user",
            f"running as uid {uid}, which cannot listen on port {serve.port}",
            "run as root, or use a port of 1024 or more (SAGEMAKER_BIND_TO_PORT)",
        )
    return ok("user", f"running as uid {uid} (not root): smc needs no root, see the opt_ml check for writable dirs")


def check_nginx(config: Config, serve: ServeConfig) -> Finding:
    from supervisor_app.serve.preflight import find_nginx  # the very lookup serve does

    try:
        path = find_nginx(serve)
    except SmcError as exc:
        return fail("nginx", f"{exc.message}; smc serve puts nginx in front of gunicorn", exc.hint)
    try:
        result = subprocess.run(
            [path, "-v"], capture_output=True, text=True, timeout=10, env=process.foreign_env(config.environ)
        )
    except OSError as exc:
        return fail("nginx", f"{path} cannot run: {exc.strerror}", "reinstall nginx in the image", path)
    version = (result.stderr or result.stdout).strip().replace("nginx version: ", "")
    if result.returncode != 0:
        return fail("nginx", f"{path} -v failed: {version}", "reinstall nginx in the image", path)
    return ok("nginx", f"{version} at {path}", path)


def check_port(serve: ServeConfig) -> Finding:
    from supervisor_app.serve.preflight import check_port_free  # the very check serve does

    try:
        check_port_free(serve.port)
    except SmcError as exc:
        return fail("port", exc.message, exc.hint)
    return ok("port", f"port {serve.port} is free")


def check_labels(serve: ServeConfig, doctor: DoctorConfig) -> list[Finding]:
    findings = []
    if serve.port != DEFAULT_PORT:
        findings.append(
            warn(
                "label_bind_to_port",
                f"the port is {serve.port}, not 8080: SageMaker sets SAGEMAKER_BIND_TO_PORT only for images that declare support",
                f"make sure the Dockerfile has LABEL {BIND_TO_PORT_LABEL}=true (labels cannot be read from inside)",
            )
        )
    if doctor.multi_model:
        findings.append(
            ok(
                "multi_model",
                "SAGEMAKER_MULTI_MODEL=true: smc serve offers the /models API (a multi-model endpoint); the "
                f"Dockerfile needs LABEL {MULTI_MODEL_LABEL}=true (`smc doctor --image` checks it)",
            )
        )
    return findings


def check_codeartifact(config: Config) -> list[Finding]:
    """CA_REPOSITORY_ARN is well-formed (the token itself is fetched at start, not here: doctor
    also runs where AWS cannot be reached)."""
    arn = config.environ.get("CA_REPOSITORY_ARN")
    if not arn:
        return []
    from supervisor_app import codeartifact

    try:
        repo = codeartifact.parse_arn(arn)
    except SmcError as exc:
        return [fail("codeartifact", exc.message, exc.hint, "CA_REPOSITORY_ARN")]
    return [ok("codeartifact", f"pip installs use CodeArtifact {repo.domain}/{repo.name} ({repo.region}); "
               "the role needs codeartifact:GetAuthorizationToken, GetRepositoryEndpoint, ReadFromRepository "
               "and sts:GetServiceBearerToken", "CA_REPOSITORY_ARN")]
