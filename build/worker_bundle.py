"""Build smc's worker bundle: the source that `smc serve` hands to the image's own Python.

    python3 build/worker_bundle.py OUT.zip GUNICORN_SITE FALLBACK_SITE

The zip holds, as source (it must import on CPython 3.9 to 3.13, so no bytecode):
- supervisor_app/worker/ and the modules of supervisor_app it imports, found by following its
  imports (tests/unit/test_worker_boundary.py keeps that set to the few shared leaf modules);
- gunicorn, from GUNICORN_SITE: the same version the embedded side runs;
- fallback/: FALLBACK_SITE's packages (requirements/worker.txt: uvicorn and its parts, resolved for
  the oldest supported Python), put last on sys.path, so the image's own copies win.

Bytecode: each CPython 3.9-3.13 found on the build machine (pyenv's, python3.X on PATH) and the
interpreter running this script compile the sources into __pycache__ as unchecked-hash .pyc files
(PEP 552: valid whatever the unpacked files' times), so the image's Python imports smc's worker
side without compiling it at every start (a container starts once; PYTHONDONTWRITEBYTECODE=1 is
common in images, and it only stops writing). An interpreter with no .pyc here compiles the source
as usual: slower to start, nothing else.

Entries are written in sorted order with a fixed timestamp.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "supervisor_app"
WORKER = "supervisor_app.worker"
_FIXED_TIME = (2020, 1, 1, 0, 0, 0)
_SKIPPED_DIRS = {"__pycache__", "tests", "test"}


def module_file(name: str, source_root: Path = ROOT) -> Path | None:
    base = source_root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _imports(path: Path) -> set[str]:
    """supervisor_app modules a file imports, at any depth of the file (lazy imports count)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")}


def closure(source_root: Path = ROOT) -> dict[str, Path]:
    """Every supervisor_app module the worker package needs, with its parent packages."""
    todo = [WORKER + "." + p.stem if p.name != "__init__.py" else WORKER
            for p in (source_root / "supervisor_app" / "worker").glob("*.py")]
    todo += [WORKER + ".mme." + p.stem for p in (source_root / "supervisor_app" / "worker" / "mme").glob("*.py")]
    found: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in found:
            continue
        path = module_file(name, source_root)
        if path is None:
            continue  # `from pkg import function`: not a module
        found[name] = path
        parts = name.split(".")
        todo += [".".join(parts[:i]) for i in range(1, len(parts))]  # parent packages run too
        todo += sorted(_imports(path))
    return found


def _add(archive: zipfile.ZipFile, arcname: str, path: Path) -> None:
    info = zipfile.ZipInfo(arcname, _FIXED_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    archive.writestr(info, path.read_bytes())


def _tree(site: Path, top: str) -> list[tuple[str, Path]]:
    base = site / top
    if base.is_file():
        return [(top, base)]
    return [(str(p.relative_to(site)), p) for p in base.rglob("*")
            if p.is_file() and not _SKIPPED_DIRS & set(p.relative_to(site).parts) and p.suffix != ".pyc"]


def _top_levels(site: Path) -> list[str]:
    """Importable names in a pip --target dir (packages and modules, not metadata or scripts)."""
    names = []
    for entry in sorted(site.iterdir()):
        if entry.name.endswith((".dist-info", ".egg-info")) or entry.name in ("bin", "__pycache__"):
            continue
        if entry.is_dir() or entry.suffix == ".py":
            names.append(entry.name)
    return names


def interpreters() -> list[str]:
    """CPython 3.9-3.13 on this machine (one per minor version), and the one running this script."""
    found: dict[str, str] = {}
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for minor in range(9, 14):
        candidates = sorted(pyenv.glob(f"3.{minor}.*/bin/python3")) if pyenv.is_dir() else []
        on_path = shutil.which(f"python3.{minor}")
        chosen = str(candidates[-1]) if candidates else on_path
        if chosen:
            found[f"3.{minor}"] = chosen
    found.setdefault(f"{sys.version_info[0]}.{sys.version_info[1]}", sys.executable)
    return sorted(found.values())


# What the gunicorn master and a sync worker import (the handler contract, WSGI apps, MME): only
# these get bytecode, which keeps the binary small; the rest (the ASGI server, gunicorn's unused
# parts) compiles on first import as usual.
_START_MODULES = (
    "supervisor_app.worker.boot", "supervisor_app.worker.gunicorn_app", "supervisor_app.worker.marked_worker",
    "supervisor_app.worker.wsgi", "supervisor_app.worker.user_app", "supervisor_app.worker.mme.app",
    "supervisor_app.worker.mme.mme_worker", "gunicorn.app.base", "gunicorn.arbiter", "gunicorn.workers.sync",
    "gunicorn.http.wsgi", "gunicorn.glogging", "gunicorn.sock", "gunicorn.systemd", "gunicorn.pidfile",
)
_COMPILE = """
import py_compile, sys
stage = sys.argv[1]
sys.path[0] = stage
sys.path.append(stage + "/fallback")
for name in sys.argv[2:]:
    __import__(name)
files = sorted({m.__file__ for m in list(sys.modules.values()) if (getattr(m, "__file__", None) or "").startswith(stage)})
for path in files:
    py_compile.compile(path, doraise=True, invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
print(len(files))
"""


def _compile(stage: Path, pythons: list[str]) -> list[str]:
    compiled = []
    for python in pythons:
        # -B: the imports themselves write no (timestamp) bytecode; py_compile writes the hash-based one.
        done = subprocess.run([python, "-B", "-c", _COMPILE, str(stage), *_START_MODULES], capture_output=True,
                              text=True, check=False, cwd=stage)
        if done.returncode == 0:
            compiled.append(f"{python} ({done.stdout.strip()} modules)")
        else:  # a broken or odd interpreter: its users compile at start, as before
            print(f"worker bundle: {python} could not compile: {done.stdout[-300:]}{done.stderr[-300:]}")
    return compiled


def build(out: Path, gunicorn_site: Path, fallback_site: Path) -> list[str]:
    entries: list[tuple[str, Path]] = []
    for name, path in closure().items():
        entries.append((str(path.relative_to(ROOT)), path))
    entries += _tree(gunicorn_site, "gunicorn")
    for top in _top_levels(fallback_site):
        entries += [(f"fallback/{arc}", p) for arc, p in _tree(fallback_site, top)]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        stage = Path(tmp)
        for arcname, path in entries:
            (stage / arcname).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, stage / arcname)
        compiled = _compile(stage, interpreters())
        files = sorted(str(p.relative_to(stage)) for p in stage.rglob("*") if p.is_file())
        partial = out.with_suffix(".partial")
        with zipfile.ZipFile(partial, "w") as archive:
            for arcname in files:
                _add(archive, arcname, stage / arcname)
        partial.replace(out)
    print(f"worker bundle: bytecode for {', '.join(compiled) or 'no interpreter'}")
    return files


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    names = build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print(f"worker bundle: {sys.argv[1]}: {len(names)} files")
