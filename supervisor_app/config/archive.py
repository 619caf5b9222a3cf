"""Limits on submit-directory archives (sourcedir.tar.gz): how much they may expand to on disk."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from supervisor_app.config.settings import Setting, parse_positive_int, read_settings
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


ARCHIVE_SETTINGS: tuple[Setting, ...] = (
    Setting("max_bytes", ("SMC_MAX_ARCHIVE_BYTES",), parse_bytes, 4 << 30,
            "Most bytes a submit-directory archive may expand to (sum of its files); larger ones are refused "
            "before anything is written. Accepts K/M/G/T suffixes.", "train"),
    Setting("max_files", ("SMC_MAX_ARCHIVE_FILES",), parse_positive_int, 100_000,
            "Most members (files, directories, links) a submit-directory archive may have.", "train"),
)


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int = 4 << 30
    max_files: int = 100_000


def load_archive_limits(environ: Mapping[str, str]) -> ArchiveLimits:
    return ArchiveLimits(**read_settings(ARCHIVE_SETTINGS, environ))
