"""`smc doctor`'s import of the handler or app, inside the interpreter that will serve it.

Run by doctor/checks_python.py as `python3 smc_worker_boot.py --check BUNDLE SETTINGS_JSON`
(worker/boot.py, which puts the bundle on the import path first): it imports what
a worker would import (inference.py's hooks, or SMC_WSGI_APP / SMC_ASGI_APP) the way a worker
does, and prints one JSON object: {"status": "ok"|"fail", "message", "hint", "path"}. No model is
loaded (model_fn is not called), as in the embedded interpreter's doctor.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from supervisor_app.worker.settings import WorkerSettings



def inspect(settings: WorkerSettings) -> dict[str, str]:
    """The verdict on the handler or app, in this interpreter (doctor calls it in process for the
    embedded one)."""
    from supervisor_app.errors import SmcError

    app = settings.wsgi_app or settings.asgi_app
    try:
        if app:
            from supervisor_app.worker.user_app import load_user_app

            kind = "WSGI" if settings.wsgi_app else "ASGI"
            load_user_app(settings.code_dir, app, kind, settings.code_dirs_searched, settings.code_dir_rule)
            article = "a" if kind == "WSGI" else "an"
            return {"status": "ok", "message": f"SMC_{kind}_APP={app} imports and is {article} {kind} callable"}
        from supervisor_app.worker import handlers

        loaded = handlers.load_handlers(settings.code_dir, settings.module_name, settings.code_dir_requested)
    except SmcError as exc:
        return {"status": "fail", "message": exc.message, "hint": exc.hint,
                "path": str(settings.code_dir / f"{settings.module_name}.py") if not app else ""}
    return {"status": "ok", "message": f"{loaded.path.name} imports and defines {', '.join(sorted(loaded.hooks))}",
            "path": str(loaded.path)}


def main(settings_path: str) -> None:
    out = sys.stdout
    sys.stdout = sys.stderr  # what user code prints at import must not corrupt the answer
    try:
        answer = inspect(WorkerSettings.from_json(Path(settings_path).read_text(encoding="utf-8")))
    except Exception as exc:  # smc's worker code itself failed here: say so, with the cause
        answer = {"status": "fail", "message": f"smc's worker code failed under {sys.executable}: "
                  f"{type(exc).__name__}: {exc}", "hint": "set SMC_PYTHON=embedded, or report this to smc"}
    out.write(json.dumps(answer) + "\n")
    out.flush()


__all__ = ["inspect", "main"]
