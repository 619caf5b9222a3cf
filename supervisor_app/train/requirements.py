"""pip install of the code dir's requirements.txt (and of the code dir itself for a package).

With the image's python this is `python -m pip install -r requirements.txt`, as
sagemaker-training runs it. With the embedded interpreter, pip installs into the smc prefix's
site-packages (--target), which every embedded run puts on sys.path.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor_app import process, usersite
from supervisor_app.errors import UserCodeError
from supervisor_app.train import runner
from supervisor_app.interpreter import Interpreter
from supervisor_app.train.entry_point import Kind

REQUIREMENTS = "requirements.txt"


class InstallError(UserCodeError):
    def __init__(
        self, message: str, hint: str, stderr_tail: bytes = b"", stop_signal: int | None = None
    ) -> None:
        super().__init__(message, hint)
        self.stderr_tail = stderr_tail
        self.stop_signal = stop_signal


def pip_command(kind: Kind, code_dir: Path, python: Interpreter, prefix: Path) -> list[str] | None:
    has_requirements = (code_dir / REQUIREMENTS).is_file()
    if kind is Kind.PACKAGE:
        targets = ["."] + (["-r", REQUIREMENTS] if has_requirements else [])
    elif kind is Kind.PROGRAM and has_requirements:
        targets = ["-r", REQUIREMENTS]
    else:
        return None  # the toolkit installs nothing for shell scripts and commands
    argv = [*python.argv, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", *targets]
    if python.embedded:
        argv += ["--upgrade", "--target", str(usersite.site_packages(prefix))]
    return argv


def install(argv: list[str], env: Mapping[str, str], code_dir: Path, grace_s: float, log: Any) -> None:
    what = "the package in the code directory" if "." in argv else REQUIREMENTS
    shown = argv
    if env.get("CA_REPOSITORY_ARN"):  # pip uses that CodeArtifact repository, as the toolkits do
        from supervisor_app import codeartifact

        index_url = codeartifact.index_url(env, log)
        argv, shown = [*argv, "--index-url", index_url], [*argv, "--index-url", codeartifact.redact(index_url)]
    log.info("pip_install_started", argv=shown, cwd=str(code_dir))
    outcome = runner.run(argv, env, code_dir, grace_s, log)
    if outcome.stop_signal is not None:
        raise InstallError(
            f"stopped by {process.signal_name(outcome.stop_signal)} while installing {what}",
            hint="",
            stderr_tail=outcome.stderr_tail,
            stop_signal=outcome.stop_signal,
        )
    if outcome.exit_code != 0:
        raise InstallError(
            f"pip install of {what} failed ({process.describe_exit(outcome.exit_code)})",
            hint=f"fix {REQUIREMENTS} (package names, versions, an index the container can reach); "
            "pip's own error is above and in the failure file",
            stderr_tail=outcome.stderr_tail,
        )
    log.info("pip_install_finished", exit_code=0)
