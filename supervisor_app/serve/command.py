"""`smc serve`: not built yet (see the open issue)."""

from __future__ import annotations

from supervisor_app.config import Config
from supervisor_app.errors import SmcError


def run(config: Config, args: list[str]) -> int:
    raise SmcError("smc serve is not available in this build", hint="use a release that includes it")
