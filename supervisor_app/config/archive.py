"""Limits on submit-directory archives (sourcedir.tar.gz): how much they may expand to on disk.
The settings (SMC_MAX_ARCHIVE_BYTES, SMC_MAX_ARCHIVE_FILES) are declared with the train settings."""

from __future__ import annotations

import re
from dataclasses import dataclass

from supervisor_app.errors import ConfigError

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


def parse_bytes(name: str, raw: str) -> int:
    """A byte count: 1073741824, 1024M, 1G, 1GiB (binary units)."""
    match = _SIZE.match(raw)
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"{name}={raw!r} is not a size in bytes",
                          hint=f"set {name} to a positive number of bytes, optionally with K, M, G or T (binary), "
                               f"e.g. {name}=8G")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 4 << 30
    max_files: int = 100_000


DEFAULT_MAX_BYTES = ArchiveLimits.max_bytes
DEFAULT_MAX_FILES = ArchiveLimits.max_files
