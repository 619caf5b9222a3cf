"""The gunicorn master's start under the image's own Python (serve/worker_launch.py runs it).

The supervisor unpacks smc's worker bundle (this package, the few shared modules it imports,
gunicorn, and fallback copies of uvicorn and its parts) into its run dir and starts

    python3 -c BOOT_CODE RUN_DIR/worker.json NOTIFY_FD

BOOT_CODE puts the bundle first on sys.path (smc's code and its gunicorn win over anything in the
image of the same name) and the fallback libraries last (the image's uvicorn, Flask, FastAPI are
the user's and win). Under the embedded interpreter none of this runs: the master is a fork of the
supervisor (serve/command.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

FALLBACK_DIR = "fallback"  # in the bundle: libraries used only when the image lacks them

BOOT_CODE = (
    "import sys; root = sys.argv[1]; sys.path[0] = root; del sys.argv[1]; "
    "from supervisor_app.worker.boot import main; main(root, sys.argv[1:])"
)

MASTER_PROCESS_NAME = "smc-gunicorn"
BOOT_FAILED = 3  # exitcodes.BOOT, spelled out: nothing of smc is importable yet when this fails


def _report(event: str, message: str, hint: str, notify_fd: int) -> None:
    """A JSON line on stderr (relayed into smc's log) and on the notify pipe (the supervisor's
    cause for the exit), with the standard library only: smc's own modules may be what failed."""
    import json

    record = {"event": event, "level": "error", "component": "gunicorn", "pid": os.getpid(),
              "error": message, "hint": hint, "python": sys.executable,
              "python_version": "%d.%d.%d" % sys.version_info[:3]}
    sys.stderr.write(json.dumps(record) + "\n")
    sys.stderr.flush()
    try:
        os.write(notify_fd, (json.dumps({"event": "boot_failed", "pid": os.getpid(), "message": message,
                                         "hint": hint}) + "\n").encode())
    except OSError:
        pass


def _name_process(name: str) -> None:
    """/proc/PID/comm as the forked master has it (`smc-gunicorn`), for ps and smc's own tests."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    except (OSError, AttributeError):
        pass


def shadowing_modules(root: str) -> list[str]:
    """Standard-library modules already imported from outside the standard library (a `json.py` or
    `signal.py` on PYTHONPATH): named in the error when smc's worker code fails to import."""
    names = getattr(sys, "stdlib_module_names", ())  # 3.10+; on 3.9 the import error stands alone
    stdlib = os.path.dirname(os.__file__)
    found = []
    for name in sorted(names):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if path and not path.startswith(stdlib) and not path.startswith(root):
            found.append(f"{name} from {path}")
    return found


def main(root: str, args: list[str]) -> None:
    settings_path, notify_fd = Path(args[0]), int(args[1])
    _name_process(MASTER_PROCESS_NAME)
    sys.path.append(os.path.join(root, FALLBACK_DIR))
    try:
        from supervisor_app import logs
        from supervisor_app.errors import SmcError
        from supervisor_app.worker import gunicorn_app
        from supervisor_app.worker.settings import WorkerSettings
    except Exception as exc:  # an image module shadowing one smc needs, or a Python smc cannot run on
        shadows = shadowing_modules(root)
        _report("worker_import_failed",
                f"smc's worker code failed to import under {sys.executable} "
                f"({'%d.%d.%d' % sys.version_info[:3]}): {type(exc).__name__}: {exc}"
                + (f"; modules shadowing the standard library: {', '.join(shadows)}" if shadows else ""),
                "rename or remove the shadowing module (check PYTHONPATH), or set SMC_PYTHON=embedded "
                "to serve with smc's own Python", notify_fd)
        sys.exit(BOOT_FAILED)
    settings = WorkerSettings.from_json(settings_path.read_text(encoding="utf-8"))
    logs.configure(settings.log_level, "json")  # the supervisor relays JSON lines as they are
    log = logs.get_logger("gunicorn")
    try:
        code = gunicorn_app.run_master(settings, os.environ, notify_fd)
    except SmcError as exc:
        log.error("command_failed", error=exc.message, hint=exc.hint or None, exit_code=exc.exit_code)
        code = exc.exit_code
    except Exception:  # a bug in smc: say so with the traceback, never a bare crash
        log.exception("internal_error", hint="this is a bug in smc; please report it with this traceback")
        code = 1
    sys.exit(code)


__all__ = ["BOOT_CODE", "FALLBACK_DIR", "main", "shadowing_modules"]
