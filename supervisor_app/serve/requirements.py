"""code/requirements.txt installed once when `smc serve` starts, as sagemaker-inference does.

The SageMaker SDK's `Model(entry_point=..., source_dir=...)` repacks model.tar.gz with code/ and
its requirements.txt, and the toolkit pip-installs that file at every start, before the model
server runs. smc does the same before gunicorn starts, so /ping cannot turn 200 first: with the
embedded pip into $SMC_PREFIX's site-packages (on every worker's sys.path), or into a private
temp dir put on the workers' PYTHONPATH when the prefix is read-only. User packages come before
the bundled ones, so a pinned flask in requirements.txt wins, as in train.

Under the image's own Python (interpreter.py) its pip installs into its own site-packages, as the
toolkit's `pip install -r` does, or into the private temp dir when that is read-only.

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

from dataclasses import dataclass

from supervisor_app import exitcodes, process, usersite
from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import ConfigError, UserCodeError
from supervisor_app.interpreter import Interpreter, Probe

REQUIREMENTS = "requirements.txt"
_TAIL_LINES = 25


class RequirementsError(UserCodeError):
    """pip could not install requirements.txt: serve never starts (exit 1)."""


@dataclass(frozen=True)
class ChosenPython:
    interpreter: Interpreter
    probe: Probe


def pip_argv(requirements: Path, target: Path | None, index_url: str | None,
             python: Interpreter | None = None) -> list[str]:
    """target None: the interpreter's own site-packages (the image's Python, writable)."""
    argv = [*(python.argv if python else (*process.self_command(), "python")), "-m", "pip", "install",
            "--disable-pip-version-check", "--no-input"]
    if target is not None:
        argv += ["--upgrade", "--target", str(target)]
    argv += ["-r", str(requirements)]
    if index_url:
        argv += ["--index-url", index_url]
    return argv


def wanted(config: ServeConfig) -> Path | None:
    """requirements.txt to install, or None (none there, or SMC_INSTALL_REQUIREMENTS=false)."""
    path = config.code_dir / REQUIREMENTS
    if not config.install_requirements or not path.is_file():
        return None
    return path


def install(config: ServeConfig, environ: Mapping[str, str], log: Any,
            python: ChosenPython) -> tuple[dict[str, str], Path | None]:
    """Install requirements.txt if there is one; returns the environment the workers need, and
    the private install dir that the caller removes when smc ends (None when none was made)."""
    path = wanted(config)
    if path is None:
        if (config.code_dir / REQUIREMENTS).is_file():
            log.info("requirements_skipped", path=str(config.code_dir / REQUIREMENTS),
                     why="SMC_INSTALL_REQUIREMENTS=false")
        return {}, None
    if not python.interpreter.embedded and not python.probe.has_pip:
        raise ConfigError(
            f"{path} needs pip, and {python.interpreter.name} ({python.interpreter.reason}, Python "
            f"{python.probe.version_text}) has no pip module",
            hint="install pip in the image (Debian/Ubuntu: apt-get install python3-pip), install the requirements at "
            "image build time, or set SMC_INSTALL_REQUIREMENTS=false",
        )
    target, private = _target(config, python)
    try:
        return (_install(config, environ, log, path, target, private, python),
                target.parent if private and target is not None else None)
    except BaseException:
        if private:
            shutil.rmtree(target.parent, ignore_errors=True)
        raise


def _install(config: ServeConfig, environ: Mapping[str, str], log: Any, path: Path, target: Path | None,
             private: bool, python: ChosenPython) -> dict[str, str]:
    index_url = shown_index = None
    if environ.get("CA_REPOSITORY_ARN"):
        from supervisor_app import codeartifact  # only then pay for urllib and ssl

        index_url = codeartifact.index_url(environ, log)
        shown_index = codeartifact.redact(index_url)
    embedded = python.interpreter.embedded
    argv = pip_argv(path, target, index_url, None if embedded else python.interpreter)
    shown = [shown_index if a == index_url and index_url else a for a in argv]
    where = str(target or python.probe.purelib)
    log.info("requirements_install_started", path=str(path), target=where, private_target=private,
             argv=shown, timeout_s=config.requirements_timeout_s, python=python.interpreter.name)
    started = time.monotonic()
    env = process.self_env(environ) if embedded else process.foreign_env(environ)
    output = _run(argv, env, config.code_dir, config.requirements_timeout_s, path)
    log.info("requirements_installed", path=str(path), target=where,
             duration_s=round(time.monotonic() - started, 3), pip=_summary(output))
    if not private:
        return {}
    existing = environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": f"{target}{os.pathsep}{existing}" if existing else str(target)}


def _target(config: ServeConfig, python: ChosenPython) -> tuple[Path | None, bool]:
    if not python.interpreter.embedded:
        purelib = python.probe.purelib
        if purelib and os.access(purelib, os.W_OK | os.X_OK):
            return None, False  # its own pip, its own site-packages
        return _private(config), True
    target = usersite.site_packages(config.prefix)
    try:
        target.mkdir(parents=True, exist_ok=True)
        if os.access(target, os.W_OK | os.X_OK):
            return target, False
    except OSError:
        pass
    return _private(config), True


def _private(config: ServeConfig) -> Path:
    # A read-only image (or a prefix owned by another user): install privately for this run.
    private = Path(tempfile.mkdtemp(prefix="smc-requirements-", dir=config.tmp_dir)) / "site-packages"
    private.mkdir()
    return private


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
