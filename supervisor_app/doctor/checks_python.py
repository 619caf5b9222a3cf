"""Which Python runs user code (interpreter.py's rule), whether it can, and the handler's import
inside it when it is the image's own (worker/check.py does the import there)."""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

from supervisor_app import interpreter, process
from supervisor_app.config import Config
from supervisor_app.config.serve import ServeConfig
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.errors import SmcError

CHECK_TIMEOUT_S = 60.0


def check_python(config: Config, serving: bool) -> tuple[interpreter.Interpreter | None, list[Finding]]:
    """The chosen interpreter (None when it cannot run) and what doctor says about it."""
    try:
        chosen = interpreter.choose(config.python, config.environ.get("PATH"), config.prefix)
        found = interpreter.probe(chosen, config.environ)
        if serving and not chosen.embedded:
            interpreter.require_worker_version(chosen, found)
    except SmcError as exc:
        return None, [fail("python", exc.message, exc.hint)]
    findings = [ok("python", f"user code runs under {chosen.name} (Python {found.version_text}): {chosen.reason}",
                   found.executable)]
    installed = interpreter.prefix_packages(config.prefix)
    if installed and not chosen.embedded:
        findings.append(warn(
            "python_prefix_packages",
            f"SMC_PREFIX={config.prefix} holds packages installed with `smc python -m pip` "
            f"({', '.join(installed[:5])}), but {chosen.name} ({chosen.reason}) runs user code and will not see them",
            "set SMC_PYTHON=embedded to run user code with smc's own Python, or install the packages for "
            f"{chosen.argv[0]} (`{chosen.argv[0]} -m pip install ...`)",
            str(config.prefix),
        ))
    return chosen, findings


def check_handler_in(python: interpreter.Interpreter, config: Config, serve: ServeConfig) -> Finding:
    """Import the handler or app in the image's Python, as its workers will."""
    from supervisor_app.serve.worker_launch import bundle_path, write_boot_script
    from supervisor_app.serve.worker_plan import worker_settings
    from supervisor_app.worker.boot import SCRIPT_NAME

    work = Path(tempfile.mkdtemp(prefix="smc-doctor-", dir=config.tmp_dir))
    try:
        bundle = bundle_path()
        write_boot_script(bundle, work / SCRIPT_NAME)
        settings = worker_settings(serve, work, 1, config.log_level, python)
        (work / "worker.json").write_text(settings.to_json(), encoding="utf-8")
        done = subprocess.run([*python.argv, str(work / SCRIPT_NAME), "--check", str(bundle), str(work / "worker.json")],
                              env=process.foreign_env(config.environ), cwd=str(serve.code_dir) if serve.code_dir.is_dir()
                              else None, stdin=subprocess.DEVNULL, capture_output=True, timeout=CHECK_TIMEOUT_S,
                              check=False)
    except SmcError as exc:
        return fail("handler", exc.message, exc.hint)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return fail("handler", f"cannot import the handler under {python.name}: {exc}",
                    "check TMPDIR and the interpreter, or set SMC_PYTHON=embedded")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    try:
        answer = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = " | ".join(done.stderr.decode(errors="replace").strip().splitlines()[-3:])
        return fail("handler", f"importing the handler under {python.name} ended with "
                    f"{process.describe_exit(done.returncode)}: {tail}", "run it by hand to see the whole error")
    where = f" (under {python.name})"
    if answer.get("status") == "ok":
        return ok("handler", answer["message"] + where, answer.get("path", ""))
    return fail("handler", answer.get("message", "") + where, answer.get("hint", ""), answer.get("path", ""))


__all__ = ["check_handler_in", "check_python"]
