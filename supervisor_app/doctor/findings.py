"""A finding: one check's verdict (ok / warn / fail), what is wrong and how to fix it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Finding:
    check: str  # snake_case name of the check, stable for machines
    status: str  # ok | warn | fail
    message: str  # what was found
    hint: str = ""  # how to fix it (empty when ok)
    path: str = ""  # the file or directory concerned, if any

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v != ""}


def ok(check: str, message: str, path: str = "") -> Finding:
    return Finding(check, OK, message, path=path)


def warn(check: str, message: str, hint: str, path: str = "") -> Finding:
    return Finding(check, WARN, message, hint, path)


def fail(check: str, message: str, hint: str, path: str = "") -> Finding:
    return Finding(check, FAIL, message, hint, path)
