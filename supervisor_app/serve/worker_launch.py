"""Getting the worker side ready to run under the image's Python: the settings file and the boot
script in the run dir (removed when smc ends; $TMPDIR is the only place written).

The bundle is one zip inside the binary (build/worker_bundle.py, spec/smc.spec), so the binary's
own start unpacks one file, not hundreds; the image's Python imports from that zip in place.
"""

from __future__ import annotations

import os
import sys
import zipfile
from pathlib import Path

from supervisor_app.errors import BootError
from supervisor_app.serve.worker_plan import MasterPlan
from supervisor_app.worker.boot import ARCNAME

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


def write_boot_script(source: Path, target: Path) -> None:
    """worker/boot.py out of the bundle: the one file the image's Python needs on disk."""
    try:
        with zipfile.ZipFile(source) as archive:
            target.write_bytes(archive.read(ARCNAME))
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise BootError(f"cannot take smc's worker start script out of {source} into {target}: {exc}",
                        hint="TMPDIR must be writable; a damaged binary: download smc again") from None


def prepare(plan: MasterPlan) -> None:
    """Write the settings file; for the image's Python, the boot script beside it. The bundle itself
    stays where the binary unpacked it: the image's Python imports from the zip (worker/boot.py)."""
    plan.settings_file.write_text(plan.settings.to_json(), encoding="utf-8")
    if plan.boot_script is not None:
        write_boot_script(bundle_path(), plan.boot_script)


__all__ = ["BUNDLE_ENV", "BUNDLE_NAME", "bundle_path", "prepare", "write_boot_script"]
