"""Getting the worker side ready to run under the image's Python: the bundle unpacked into the run
dir (removed when smc ends; $TMPDIR is the only place written) and the settings file beside it.

The bundle is one zip inside the binary (build/worker_bundle.py, spec/smc.spec), so the binary's
own start unpacks one file, not hundreds; it is unpacked again only by a serve that needs it.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

from supervisor_app.errors import BootError
from supervisor_app.serve.worker_plan import MasterPlan

BUNDLE_NAME = "smc-worker.zip"
BUNDLE_ENV = "SMC_WORKER_BUNDLE"  # a zip to use instead of the binary's own (smc run from source)


def bundle_path() -> Path:
    bundled = getattr(sys, "_MEIPASS", None)
    candidates = [Path(bundled) / BUNDLE_NAME] if bundled else []
    if os.environ.get(BUNDLE_ENV):
        candidates.insert(0, Path(os.environ[BUNDLE_ENV]))
    for path in candidates:
        if path.is_file():
            return path
    raise BootError(
        "smc's worker bundle is missing, so the image's Python cannot run smc's workers"
        + (f" (looked for {', '.join(map(str, candidates))})" if candidates else " (smc runs from source)"),
        hint="build smc with `make binary` (it bundles .pyi-work/smc-worker.zip), point SMC_WORKER_BUNDLE at "
        "that file, or set SMC_PYTHON=embedded",
    )


def prepare(plan: MasterPlan) -> None:
    """Write the settings file; for the image's Python, unpack the bundle next to it."""
    plan.settings_file.write_text(plan.settings.to_json(), encoding="utf-8")
    if plan.bundle_dir is None:
        return
    target = plan.bundle_dir
    source = bundle_path()
    try:
        with zipfile.ZipFile(source) as archive:
            archive.extractall(target)
    except (OSError, zipfile.BadZipFile) as exc:
        raise BootError(f"cannot unpack smc's worker bundle {source} into {target}: {exc}",
                        hint="TMPDIR must be writable and have a few MB free") from None
    # The run dir is 0711 (nginx workers reach the socket by name only); the image's Python runs as
    # smc's user and reads the bundle as the owner.


__all__ = ["BUNDLE_ENV", "BUNDLE_NAME", "bundle_path", "prepare"]
