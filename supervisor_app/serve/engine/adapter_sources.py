"""Where an adapter's files come from: POST /adapters' `src` made into a local directory the
engine can load.

  a directory (absolute, or relative to the model directory)   used in place
  a .tar.gz / .tgz / .tar file, local or s3://                   unpacked into smc's run directory
                                                                 with the archive limits smc has
                                                                 (SMC_MAX_ARCHIVE_BYTES / _FILES)

Unpacking is train/archive.py's: members are checked as the archive is read, so a tar bomb or a
member leaving the directory is refused at its header, before its data is inflated. An archive
holding one top-level directory (as `tar czf a.tar.gz NAME`, the way AWS's examples pack an
adapter) is that directory; one holding the files at its root is the root.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.config.archive import ArchiveLimits
from supervisor_app.errors import SmcError
from supervisor_app.worker.adapter_requests import AdapterError, local_path

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")


@dataclass(frozen=True)
class Source:
    path: str  # the directory the engine loads
    owned: str | None = None  # what smc unpacked, removed at unload


def is_archive(src: str) -> bool:
    return src.lower().endswith(ARCHIVE_SUFFIXES)


def fetch(name: str, src: str, model_dir: Path, unpack_root: Path, limits: ArchiveLimits,
          environ: dict[str, str]) -> Source:
    """The adapter's directory; AdapterError (400 bad archive or kind, 404 missing) otherwise."""
    if src.startswith("s3://"):
        if not is_archive(src):
            raise AdapterError(400, f"`src` {src!r}: an s3:// source must be a .tar.gz of the adapter's files")
        return _unpack(name, src, None, unpack_root, limits, environ)
    path = local_path(src, str(model_dir))
    if os.path.isdir(path):
        return Source(path)
    if is_archive(path):
        return _unpack(name, src, Path(path), unpack_root, limits, environ)
    raise AdapterError(400, f"`src` {src!r} is a file but not a .tar.gz: give the adapter's directory "
                            "(adapter_config.json and its weights) or a .tar.gz of it")


def _unpack(name: str, src: str, archive: Path | None, root: Path, limits: ArchiveLimits,
            environ: dict[str, str]) -> Source:
    from supervisor_app.train.archive import extract

    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=root))
    try:
        if archive is None:
            archive = dest.with_suffix(".download")
            _download(src, archive, limits, environ)
        try:
            extract(archive, dest, src, limits)
        finally:
            if archive.parent == root:
                archive.unlink(missing_ok=True)
    except SmcError as exc:
        shutil.rmtree(dest, ignore_errors=True)
        raise AdapterError(400, f"adapter {name!r}: {exc.message}") from None
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise
    return Source(str(_adapter_dir(dest)), owned=str(dest))


def _download(src: str, target: Path, limits: ArchiveLimits, environ: dict[str, str]) -> None:
    from supervisor_app.config.settings import read_settings
    from supervisor_app.config.train import S3_SETTINGS, S3Config
    from supervisor_app.train import s3

    values = read_settings(S3_SETTINGS, environ)
    region = environ.get("AWS_REGION") or environ.get("AWS_DEFAULT_REGION") or ""
    s3.download(src, target, S3Config(region=region, **values), max_bytes=limits.max_bytes)


def _adapter_dir(dest: Path) -> Path:
    if (dest / "adapter_config.json").exists():
        return dest
    entries = [e for e in dest.iterdir()]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def remove(source: Source) -> None:
    if source.owned:
        shutil.rmtree(source.owned, ignore_errors=True)


__all__ = ["ARCHIVE_SUFFIXES", "Source", "fetch", "is_archive", "remove"]
