"""Build smc's worker bundle: the source that `smc serve` hands to the image's own Python.

    python3 build/worker_bundle.py OUT.zip GUNICORN_SITE FALLBACK_SITE

The zip holds, as source (it must import on CPython 3.9 to 3.13, so no bytecode):
- supervisor_app/worker/ and the modules of supervisor_app it imports, found by following its
  imports (tests/unit/test_worker_boundary.py keeps that set to the few shared leaf modules);
- gunicorn, from GUNICORN_SITE: the same version the embedded side runs;
- fallback/: FALLBACK_SITE's packages (requirements/worker.txt: uvicorn and its parts, resolved for
  the oldest supported Python), put last on sys.path, so the image's own copies win.

Entries are written in sorted order with a fixed timestamp: the same inputs give the same bytes,
and the file's digest names its unpacked copy.
"""

from __future__ import annotations

import ast
import sys
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


def build(out: Path, gunicorn_site: Path, fallback_site: Path) -> list[str]:
    entries: list[tuple[str, Path]] = []
    for name, path in closure().items():
        entries.append((str(path.relative_to(ROOT)), path))
    entries += _tree(gunicorn_site, "gunicorn")
    for top in _top_levels(fallback_site):
        entries += [(f"fallback/{arc}", p) for arc, p in _tree(fallback_site, top)]
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w") as archive:
        for arcname, path in sorted(set(entries)):
            _add(archive, arcname, path)
    partial.replace(out)
    return sorted(arc for arc, _ in entries)


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__.split("\n\n")[1])
    names = build(Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]))
    print(f"worker bundle: {sys.argv[1]}: {len(names)} files")
