"""Extract a submit-directory archive into the code dir: all of it or nothing.

Members are checked while the archive is read (paths, links, devices, the size and count limits),
so a bomb is refused at the first header that crosses a limit, before its data is inflated. The
archive is extracted into a staging directory next to the code dir (same filesystem) and its
entries are renamed into place only once extraction is complete; a refused or broken archive
leaves the code dir as it was.
"""

from __future__ import annotations

import lzma
import os
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from supervisor_app.config.archive import ArchiveLimits
from supervisor_app.errors import UserCodeError

_REBUILD_HINT = ("rebuild the archive from the source directory itself, with relative paths and no links "
                 "leaving it (tar czf sourcedir.tar.gz -C src .)")


def extract(archive: Path, dest: Path, origin: str, limits: ArchiveLimits) -> int:
    """Extract `archive` into the (empty) directory `dest`; returns the number of bytes written."""
    root = dest.resolve()
    staging = _staging_dir(root)
    moved: list[Path] = []
    try:
        try:
            with tarfile.open(archive, mode="r:*") as tar:
                members, total = _checked_members(tar, root, origin, limits)
                _extract_members(tar, staging, members)
        except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, ValueError) as exc:
            # ValueError: bz2 reports damage that way; EOFError/zlib.error: a truncated or corrupt gzip
            raise UserCodeError(
                f"cannot extract {origin}: {exc or type(exc).__name__}",
                hint="the submit directory must be a tar.gz made by `tar czf sourcedir.tar.gz -C src .`",
            ) from None
        except OSError as exc:
            raise UserCodeError(f"cannot extract {origin} into {root}: {exc.strerror or exc}",
                                hint="check free disk space and permissions of the code directory") from None
        for entry in sorted(staging.iterdir()):
            target = root / entry.name  # the code dir is empty: nothing is replaced
            os.rename(entry, target)
            moved.append(target)
        return total
    except BaseException:
        for path in moved:  # only if a rename failed half way: take back what was moved
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_members(tar: tarfile.TarFile, staging: Path, members: list[tarfile.TarInfo]) -> None:
    if hasattr(tarfile, "data_filter"):
        # The 'data' filter re-checks the same rules and drops setuid bits and odd modes.
        tar.extractall(staging, members=members, filter="data")
        return
    # CPython before 3.11.4 (the embedded 3.11.2; images' 3.9 and 3.10) has no extraction filters:
    # _checked_members has refused what the filter refuses; what it would change is done here.
    for member in members:
        if member.isfile():
            mode = (member.mode | 0o600) & 0o755  # no setuid/setgid/sticky, no group/other write
            member.mode = mode if mode & 0o100 else mode & ~0o011
        elif member.isdir():
            member.mode = (member.mode | 0o700) & 0o755
    tar.chown = lambda *args, **kwargs: None  # files belong to smc's user, not to the archive's uid
    tar.extractall(staging, members=members)


_STAGING_PREFIX = ".smc-extract-"


def remove_leftovers(code_dir: Path) -> None:
    """Staging dirs (inside the code dir, or beside it) can only be left by a killed smc."""
    for entry in [*code_dir.glob(f"{_STAGING_PREFIX}*"), *code_dir.parent.glob(f".{code_dir.name}{_STAGING_PREFIX}*")]:
        shutil.rmtree(entry, ignore_errors=True)


def _staging_dir(root: Path) -> Path:
    """Beside the code dir when the parent is writable and on the same filesystem (renames are
    atomic and nothing half-done is ever inside the code dir); else a hidden dir inside it."""
    parent = root.parent
    try:
        if os.access(parent, os.W_OK) and parent.stat().st_dev == root.stat().st_dev:
            return Path(tempfile.mkdtemp(prefix=f".{root.name}{_STAGING_PREFIX}", dir=parent))
    except OSError:
        pass
    return Path(tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root))


def _checked_members(tar: tarfile.TarFile, root: Path, origin: str,
                     limits: ArchiveLimits) -> tuple[list[tarfile.TarInfo], int]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for member in tar:  # streams: stops reading at the first member over a limit
        check_member(member, root, origin)
        members.append(member)
        if len(members) > limits.max_files:
            raise UserCodeError(
                f"refusing to extract {origin}: it has more than {limits.max_files:,} members "
                f"(SMC_MAX_ARCHIVE_FILES={limits.max_files})",
                hint="leave data and dependencies out of the source dir (use a channel, or install them in the "
                     "image), or raise SMC_MAX_ARCHIVE_FILES if the archive is genuine",
            )
        if member.isreg():
            total += member.size
            if total > limits.max_bytes:
                raise UserCodeError(
                    f"refusing to extract {origin}: it expands to more than {_human(limits.max_bytes)} "
                    f"(SMC_MAX_ARCHIVE_BYTES={limits.max_bytes}; member {member.name!r} alone is {_human(member.size)})",
                    hint="put large files (data, model weights) in a channel instead of the source dir, "
                         "or raise SMC_MAX_ARCHIVE_BYTES (e.g. SMC_MAX_ARCHIVE_BYTES=16G) if the archive is genuine",
                )
    return members, total


def check_member(member: tarfile.TarInfo, root: Path, origin: str) -> None:
    name = member.name
    problem = ""
    if name.startswith("/") or re.match(r"^[A-Za-z]:", name):
        problem = "has an absolute path"
    elif ".." in Path(name).parts:
        problem = "contains '..'"
    elif member.isdev() or member.isfifo():
        problem = "is a device or FIFO"
    elif member.issym() or member.islnk():
        target = member.linkname
        base = (root / name).parent if member.issym() else root
        resolved = Path(os.path.normpath(base / target)) if not target.startswith("/") else Path(target)
        if target.startswith("/") or (resolved != root and root not in resolved.parents):
            problem = f"is a link to {target!r}, outside the code directory"
    if problem:
        raise UserCodeError(f"refusing to extract {origin}: member {name!r} {problem}", hint=_REBUILD_HINT)


def _human(size: int) -> str:
    for unit, scale in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"
