"""code/requirements.txt installed once when `smc serve` starts, as sagemaker-inference does.

The SageMaker SDK's `Model(entry_point=..., source_dir=...)` repacks model.tar.gz with code/ and
its requirements.txt, and the toolkit pip-installs that file at every start, before the model
server runs. smc does the same before gunicorn starts, so /ping cannot turn 200 first: with the
embedded pip into $SMC_PREFIX's site-packages (on every worker's sys.path), or into a private
temp dir put on the workers' PYTHONPATH when the prefix is read-only. User packages come before
the bundled ones, so a pinned flask in requirements.txt wins, as in train.

The install is bounded (SMC_REQUIREMENTS_TIMEOUT_SECONDS): an index that cannot be reached fails
with pip's own message, never a hang. CA_REPOSITORY_ARN points pip at a CodeArtifact repository.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor_app import exitcodes, process, usersite
from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import UserCodeError

REQUIREMENTS = "requirements.txt"
_TAIL_LINES = 25


class RequirementsError(UserCodeError):
    """pip could not install requirements.txt: serve never starts (exit 1)."""


def pip_argv(requirements: Path, target: Path, index_url: str | None) -> list[str]:
    argv = [*process.self_command(), "python", "-m", "pip", "install", "--disable-pip-version-check",
            "--no-input", "--upgrade", "--target", str(target), "-r", str(requirements)]
    if index_url:
        argv += ["--index-url", index_url]
    return argv


def wanted(config: ServeConfig) -> Path | None:
    """requirements.txt to install, or None (none there, or SMC_INSTALL_REQUIREMENTS=false)."""
    path = config.code_dir / REQUIREMENTS
    if not config.install_requirements or not path.is_file():
        return None
    return path


def install(config: ServeConfig, environ: Mapping[str, str], log: Any) -> tuple[dict[str, str], Path | None]:
    """Install requirements.txt if there is one; returns the environment the workers need, and
    the private install dir that the caller removes when smc ends (None when none was made)."""
    path = wanted(config)
    if path is None:
        if (config.code_dir / REQUIREMENTS).is_file():
            log.info("requirements_skipped", path=str(config.code_dir / REQUIREMENTS),
                     why="SMC_INSTALL_REQUIREMENTS=false")
        return {}, None
    target, private = _target(config)
    try:
        return _install(config, environ, log, path, target, private), target.parent if private else None
    except BaseException:
        if private:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise


def _install(config: ServeConfig, environ: Mapping[str, str], log: Any, path: Path, target: Path,
             private: bool) -> dict[str, str]:
    index_url = shown_index = None
    if environ.get("CA_REPOSITORY_ARN"):
        from supervisor_app import codeartifact  # only then pay for urllib and ssl

        index_url = codeartifact.index_url(environ, log)
        shown_index = codeartifact.redact(index_url)
    argv = pip_argv(path, target, index_url)
    shown = [shown_index if a == index_url and index_url else a for a in argv]
    log.info("requirements_install_started", path=str(path), target=str(target), private_target=private,
             argv=shown, timeout_s=config.requirements_timeout_s)
    started = time.monotonic()
    output = _run(argv, process.self_env(environ), config.code_dir, config.requirements_timeout_s, path)
    log.info("requirements_installed", path=str(path), target=str(target),
             duration_s=round(time.monotonic() - started, 3), pip=_summary(output))
    if not private:
        return {}
    existing = environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{target}{os.pathsep}{existing}" if existing else str(target)}


def _target(config: ServeConfig) -> tuple[Path, bool]:
    target = usersite.site_packages(config.prefix)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if os.access(target, os.W_OK | os.X_OK):
            return target, False
    except OSError:
        pass
    # A read-only image (or /opt/smc owned by another user): install privately for this run.
    private = Path(tempfile.mkdtemp(prefix="smc-requirements-", dir=config.tmp_dir)) / "site-packages"
    private.mkdir()
    return private, True


def _run(argv: list[str], env: dict[str, str], cwd: Path, timeout_s: float, path: Path) -> str:
    try:
        proc = subprocess.Popen(argv, env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        raise RequirementsError(f"cannot start pip to install {path}: {exc}", hint="") from None
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        _kill(proc)
        out, _ = proc.communicate()
        raise RequirementsError(
            f"pip install -r {path} did not finish within {timeout_s:g} s "
            f"(SMC_REQUIREMENTS_TIMEOUT_SECONDS); pip's last lines:\n{_tail(out)}",
            hint="the package index may be unreachable from this container (a VPC endpoint has no PyPI): "
            "install at image build time (RUN smc python -m pip install -r requirements.txt), "
            "or set CA_REPOSITORY_ARN to a CodeArtifact repository",
        ) from None
    except BaseException:
        # SIGTERM/SIGINT while installing (process.StopRequested, exit 128+n as a stop before the
        # servers start): pip goes with us. Its own session, so a terminal's ^C reaches only smc.
        _kill(proc)
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RequirementsError(
            f"pip install -r {path} failed ({process.describe_exit(_code(proc.returncode))}); "
            f"pip's last lines:\n{_tail(out)}",
            hint=f"fix {path.name} (names, versions, wheels for this platform) or install at image build time; "
            "SMC_INSTALL_REQUIREMENTS=false skips the install",
        )
    return out.decode(errors="replace")


def _kill(proc: subprocess.Popen) -> None:
    process.killpg(proc.pid, signal.SIGKILL)  # pip and anything it started (build backends)


def _code(returncode: int) -> int:
    return returncode if returncode >= 0 else exitcodes.from_signal(-returncode)


def _tail(out: bytes) -> str:
    lines = out.decode(errors="replace").rstrip().splitlines()
    return "\n".join(lines[-_TAIL_LINES:])


def _summary(output: str) -> str:
    done = [line for line in output.splitlines() if line.startswith("Successfully installed")]
    return done[-1] if done else (output.strip().splitlines() or [""])[-1]
