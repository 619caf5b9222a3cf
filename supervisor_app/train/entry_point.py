"""Find the entry point, fill the code dir from the submit directory, and build the command.

Kinds, decided as sagemaker-training does: `*.sh` is a shell script; a code dir with setup.py
(or a pyproject.toml declaring a project or build system) is a package installed with pip and run
as `python -m NAME`; `*.py` is a Python program; anything else is a command run directly.
"""

from __future__ import annotations

import enum
import re
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

from supervisor_app.interpreter import Interpreter
from supervisor_app.config.archive import ArchiveLimits
from supervisor_app.train import archive as archive_module
from supervisor_app.errors import ConfigError, NotExecutableError, NotFoundError

# sagemaker-training 5.1.4's rule: a relative path of letters, digits and . _ + - segments,
# not starting with '-' (an option) or '/' (absolute), without '.' or '..' segments.
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._+-]*(/[A-Za-z0-9._+-]+)*$")


class Kind(enum.Enum):
    PACKAGE = "package"
    PROGRAM = "program"
    SHELL = "shell"
    COMMAND = "command"


def validate_name(name: str | None) -> str:
    if not name:
        raise ConfigError(
            "no training entry point: neither SAGEMAKER_PROGRAM nor the sagemaker_program hyperparameter is set",
            hint="set SAGEMAKER_PROGRAM=train.py in the image (ENV) or the sagemaker_program hyperparameter "
            "(the SDK's entry_point) to a file in the code directory",
        )
    if not _SAFE_NAME.match(name) or any(part in (".", "..") for part in name.split("/")):
        raise ConfigError(
            f"entry point {name!r} is not a plain relative path inside the code directory",
            hint="use only letters, digits, '.', '_', '+', '-' and '/', no leading '-' or '/', "
            "no '.' or '..' segments, e.g. train.py or bin/train.sh",
        )
    return name


def entry_path(code_dir: Path, name: str) -> Path:
    root = code_dir.resolve()
    path = (root / name).resolve()
    if path != root and root not in path.parents:
        raise ConfigError(
            f"entry point {name!r} resolves to {path}, outside the code directory {root}",
            hint="point the entry point at a file inside the code directory",
        )
    if not path.is_file():
        raise NotFoundError(
            f"entry point {name!r} not found in {code_dir}"
            + ("" if any(code_dir.iterdir()) else " (the code directory is empty)"),
            hint="put the script in /opt/ml/code (COPY in the Dockerfile) or pass it as the SDK's "
            "source_dir/entry_point (sagemaker_submit_directory), and check the spelling",
        )
    return path


def kind_of(code_dir: Path, name: str) -> Kind:
    if name.endswith(".sh"):
        return Kind.SHELL
    if (code_dir / "setup.py").is_file() or _declares_project(code_dir / "pyproject.toml"):
        return Kind.PACKAGE
    if name.endswith(".py"):
        return Kind.PROGRAM
    return Kind.COMMAND


def _declares_project(pyproject: Path) -> bool:
    # A pyproject.toml holding only tool settings (ruff, black) is not an installable package.
    try:
        text = pyproject.read_text(encoding="utf-8")
    except OSError:
        return False
    return re.search(r"^\s*\[(project|build-system)\]", text, re.MULTILINE) is not None


def build_command(kind: Kind, path: Path, name: str, args: list[str], python: Interpreter) -> list[str]:
    if kind is Kind.PACKAGE:
        return [*python.argv, "-m", re.sub(r"\.py$", "", name), *args]
    if kind is Kind.PROGRAM:
        return [*python.argv, name, *args]
    if kind is Kind.SHELL and not _has_shebang(path):
        return ["/bin/sh", f"./{name}", *args]  # $0 is ./NAME, as under the toolkit's sh -c
    return [f"./{name}", *args]


def make_executable(path: Path) -> None:
    """sagemaker-training chmods command entry points; smc adds the execute bits the same way."""
    mode = path.stat().st_mode
    wanted = mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH
    if mode == wanted:
        return
    try:
        path.chmod(wanted)
    except OSError as exc:
        raise NotExecutableError(
            f"entry point {path} is not executable and smc cannot make it so: {exc.strerror}",
            hint=f"run `chmod +x {path.name}` before building the image, or name it .py or .sh",
        ) from None


def _has_shebang(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(2) == b"#!"


# ---- the submit directory -------------------------------------------------------------------


def prepare_code_dir(
    source: str, code_dir: Path, tmp_dir: Path, download: Callable[[str, Path], None],
    limits: ArchiveLimits | None = None,
) -> str:
    """Fill an empty code dir from `source`; returns what was done, for the log.

    As in sagemaker-training, a code dir that already has files (the image's COPY) wins and the
    submit directory is not used."""
    code_dir.mkdir(parents=True, exist_ok=True)
    archive_module.remove_leftovers(code_dir)  # from an extraction a kill interrupted
    if any(code_dir.iterdir()):
        return "kept_existing_code_dir"
    source = source.removeprefix("file://")
    if source.startswith("s3://"):
        with tempfile.TemporaryDirectory(dir=tmp_dir, prefix="smc-submit-") as tmp:
            archive = Path(tmp) / "sourcedir.tar.gz"
            download(source, archive)
            safe_extract(archive, code_dir, source, limits)
        return "extracted_s3_archive"
    local = Path(source)
    if local.resolve() == code_dir.resolve():
        return "code_dir_is_submit_dir"
    if local.is_dir():
        shutil.copytree(local, code_dir, symlinks=True, dirs_exist_ok=True)
        return "copied_directory"
    if not local.exists():
        raise ConfigError(
            f"submit directory {source!r} does not exist",
            hint="sagemaker_submit_directory (or SAGEMAKER_SUBMIT_DIRECTORY) must be a directory, "
            "a .tar.gz, or an s3:// URL; or put the code in the code directory",
        )
    if tarfile.is_tarfile(local):
        safe_extract(local, code_dir, source, limits)
        return "extracted_archive"
    shutil.copy2(local, code_dir)
    return "copied_file"


def safe_extract(archive: Path, dest: Path, origin: str, limits: ArchiveLimits | None = None) -> None:
    """Extract a tar archive into `dest`, whole or not at all (see archive.py)."""
    archive_module.extract(archive, dest, origin, limits or ArchiveLimits())
