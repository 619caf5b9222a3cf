"""The gunicorn master's start under the image's own Python (serve/worker_launch.py runs it).

The binary carries smc's worker bundle as one zip (build/worker_bundle.py): this package, the few
shared modules it imports, gunicorn, fallback copies of uvicorn and its parts, and bytecode for
CPython 3.9-3.13. The supervisor copies only this file into its run dir and starts

    python3 RUN_DIR/smc_worker_boot.py BUNDLE_ZIP RUN_DIR/worker.json NOTIFY_FD
    python3 RUN_DIR/smc_worker_boot.py --check BUNDLE_ZIP SETTINGS_JSON   (smc doctor)

Modules are imported straight from the zip (nothing unpacked: unpacking ~500 files cost 0.3-0.5 s
of every cold start), by two finders: smc's own (supervisor_app, gunicorn) FIRST on sys.meta_path,
so they win over anything in the image of the same name; the fallback libraries LAST, so the
image's own uvicorn, Flask, FastAPI win. The standard library only, down to the imports below:
nothing of smc is importable until the finders are in place.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import marshal
import os
import sys
import zipfile

FALLBACK_DIR = "fallback"  # in the bundle: libraries used only when the image lacks them
SCRIPT_NAME = "smc_worker_boot.py"  # this file, as the supervisor writes it into the run dir
ARCNAME = "supervisor_app/worker/boot.py"  # this file in the bundle
OWN_TOP_LEVEL = ("supervisor_app", "gunicorn")
MASTER_PROCESS_NAME = "smc-gunicorn"
BOOT_FAILED = 3  # exitcodes.BOOT, spelled out: nothing of smc is importable yet when this fails


class BundleLoader(importlib.abc.Loader):
    def __init__(self, finder: BundleFinder, arcname: str) -> None:
        self.finder = finder
        self.arcname = arcname
        self.path = os.path.join(finder.zip_path, arcname)  # as zipimport names them: tracebacks show it

    def create_module(self, spec):  # noqa: ANN001, ANN201 (the default module)
        return None

    def get_filename(self, fullname: str) -> str:
        return self.path

    def get_source(self, fullname: str) -> str:
        return self.finder.archive.read(self.arcname).decode("utf-8")

    def get_code(self, fullname: str):  # noqa: ANN201
        directory, _, name = self.arcname.rpartition("/")
        cached = f"{directory}/__pycache__/{name[:-3]}.{sys.implementation.cache_tag}.pyc"
        if cached in self.finder.names:
            data = self.finder.archive.read(cached)
            if data[:4] == importlib.util.MAGIC_NUMBER:
                code = marshal.loads(data[16:])  # PEP 552 header: magic, flags, hash (unchecked)
                fix = getattr(__import__("_imp"), "_fix_co_filename", None)
                if fix is not None:
                    fix(code, self.path)  # the build machine's path -> this file's, as importlib does
                return code
        return compile(self.get_source(fullname), self.path, "exec", dont_inherit=True)

    def exec_module(self, module) -> None:  # noqa: ANN001
        exec(self.get_code(module.__name__), module.__dict__)


class BundleFinder(importlib.abc.MetaPathFinder):
    """Finds modules under `prefix` in the bundle zip; `only`: the top-level names it answers for."""

    def __init__(self, zip_path: str, prefix: str = "", only: tuple[str, ...] = ()) -> None:
        self.zip_path = zip_path
        self._archive = zipfile.ZipFile(zip_path)
        self._pid = os.getpid()
        self.names = set(self._archive.namelist())
        self.prefix = prefix
        self.only = only

    @property
    def archive(self) -> zipfile.ZipFile:
        """The zip, opened by this process: gunicorn's workers are forks of the master, and a
        descriptor shared across fork shares its file offset, so two workers importing at once
        would read each other's bytes."""
        if self._pid != os.getpid():
            self._archive = zipfile.ZipFile(self.zip_path)
            self._pid = os.getpid()
        return self._archive

    def find_spec(self, fullname: str, path=None, target=None):  # noqa: ANN001, ANN201
        if self.only and fullname.split(".")[0] not in self.only:
            return None
        base = self.prefix + fullname.replace(".", "/")
        for arcname, package in ((base + "/__init__.py", True), (base + ".py", False)):
            if arcname in self.names:
                loader = BundleLoader(self, arcname)
                spec = importlib.util.spec_from_loader(fullname, loader, origin=loader.path, is_package=package)
                spec.has_location = True
                if package:
                    spec.submodule_search_locations = []  # submodules: this finder, not zipimport's path hook
                return spec
        return None


def install(zip_path: str) -> None:
    sys.meta_path.insert(0, BundleFinder(zip_path, only=OWN_TOP_LEVEL))
    sys.meta_path.append(BundleFinder(zip_path, prefix=FALLBACK_DIR + "/"))


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


def shadowing_modules(zip_path: str) -> list[str]:
    """Standard-library modules already imported from outside the standard library (a `json.py` or
    `signal.py` on PYTHONPATH): named in the error when smc's worker code fails to import."""
    names = getattr(sys, "stdlib_module_names", ())  # 3.10+; on 3.9 the import error stands alone
    stdlib = os.path.dirname(os.__file__)
    found = []
    for name in sorted(names):
        module = sys.modules.get(name)
        path = getattr(module, "__file__", None) or ""
        if path and not path.startswith(stdlib) and not path.startswith(zip_path):
            found.append(f"{name} from {path}")
    return found


def main(args: list[str]) -> None:
    if args[:1] == ["--check"]:  # smc doctor: import the handler or app as a worker would, print JSON
        install(args[1])
        from supervisor_app.worker.check import main as check

        check(args[2])
        return
    zip_path, settings_path, notify_fd = args[0], args[1], int(args[2])
    _name_process(MASTER_PROCESS_NAME)
    install(zip_path)
    try:
        from supervisor_app import logs
        from supervisor_app.errors import SmcError
        from supervisor_app.worker import gunicorn_app
        from supervisor_app.worker.settings import WorkerSettings
    except Exception as exc:  # an image module shadowing one smc needs, or a Python smc cannot run on
        shadows = shadowing_modules(zip_path)
        _report("worker_import_failed",
                f"smc's worker code failed to import under {sys.executable} "
                f"({'%d.%d.%d' % sys.version_info[:3]}): {type(exc).__name__}: {exc}"
                + (f"; modules shadowing the standard library: {', '.join(shadows)}" if shadows else ""),
                "rename or remove the shadowing module (check PYTHONPATH), or set SMC_PYTHON=embedded "
                "to serve with smc's own Python", notify_fd)
        sys.exit(BOOT_FAILED)
    with open(settings_path, encoding="utf-8") as handle:
        settings = WorkerSettings.from_json(handle.read())
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


if __name__ == "__main__":
    if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
        del sys.path[0]  # the run dir: nothing there is for import (absent under PYTHONSAFEPATH=1)
    main(sys.argv[1:])


__all__ = ["ARCNAME", "FALLBACK_DIR", "MASTER_PROCESS_NAME", "SCRIPT_NAME", "BundleFinder", "install", "main",
           "shadowing_modules"]
