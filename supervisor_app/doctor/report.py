"""Render findings for people (aligned lines with fixes) or machines (--json)."""

from __future__ import annotations

import json
import platform
from collections import Counter
from collections.abc import Sequence

from supervisor_app.doctor.findings import FAIL, OK, WARN, Finding

_LABEL = {OK: "ok  ", WARN: "WARN", FAIL: "FAIL"}


def summary(findings: Sequence[Finding]) -> dict[str, int]:
    counts = Counter(f.status for f in findings)
    return {OK: counts[OK], WARN: counts[WARN], FAIL: counts[FAIL]}


def render_json(findings: Sequence[Finding], base_dir: str) -> str:
    counts = summary(findings)
    return json.dumps(
        {
            "ok": counts[FAIL] == 0,
            "base_dir": base_dir,
            # uname -m of the smc that ran the checks: `doctor --image` compares the image's
            # architecture with the smc inside it, which reports it here.
            "machine": platform.machine(),
            "summary": counts,
            "findings": [f.as_dict() for f in findings],
        },
        indent=2,
    )


def render_human(findings: Sequence[Finding], base_dir: str) -> str:
    width = max((len(f.check) for f in findings), default=0)
    lines = [f"smc doctor: {base_dir}", ""]
    for finding in findings:
        lines.append(f"  {_LABEL[finding.status]}  {finding.check:<{width}}  {finding.message}")
        if finding.hint:
            lines.append(f"        {'':<{width}}  fix: {finding.hint}")
    counts = summary(findings)
    lines += ["", f"{counts[OK]} ok, {counts[WARN]} warnings, {counts[FAIL]} failures"]
    return "\n".join(lines)
