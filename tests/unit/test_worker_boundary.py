"""The worker side's boundary: supervisor_app/worker imports only itself and a few shared leaf
modules (never config loading, the supervisor or the CLI), and all of it, with gunicorn and the
fallback libraries of the worker bundle, imports on every CPython from 3.9 to 3.13."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.image_pythons import find_cpython

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "build"))
import worker_bundle  # noqa: E402

# What supervises and what runs in workers may share only these: logs, exit codes, the error
# types, the embedded site rules, the metrics recorder and the causes of a process's death.
SHARED_LEAVES = {
    "supervisor_app", "supervisor_app.logs", "supervisor_app.exitcodes", "supervisor_app.errors",
    "supervisor_app.usersite", "supervisor_app.metrics", "supervisor_app.metrics.layout",
    "supervisor_app.metrics.recorder", "supervisor_app.supervision", "supervisor_app.supervision.causes",
}
VERSIONS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def test_worker_imports_only_itself_and_the_shared_leaves():
    outside = {name for name in worker_bundle.closure() if not name.startswith("supervisor_app.worker")}
    assert outside <= SHARED_LEAVES, f"the worker side reaches into the supervising side: {sorted(outside - SHARED_LEAVES)}"


def test_shared_leaves_import_nothing_outside_the_stdlib():
    """They run in the image's Python, where only the standard library is certain."""
    import ast

    for name in SHARED_LEAVES:
        path = worker_bundle.module_file(name)
        tree = ast.parse(path.read_text())
        for node in tree.body:  # module level: what runs at import
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = (module or "").split(".")[0]
                assert top in sys.stdlib_module_names or top in ("supervisor_app", "__future__"), (name, module)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """The worker bundle `make binary` built (.pyi-work/smc-worker.zip), unpacked."""
    zip_path = ROOT / ".pyi-work" / "smc-worker.zip"
    if not zip_path.is_file():
        pytest.fail("no .pyi-work/smc-worker.zip: run `make binary` first")
    target = tmp_path_factory.mktemp("bundle")
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(target)
    return target


@pytest.mark.parametrize("version", VERSIONS)
def test_every_worker_module_imports(bundle, version):
    python = find_cpython(version)
    if python is None:
        pytest.skip(f"no CPython {version} on this machine")
    code = (
        "import sys, pkgutil, importlib\n"
        f"sys.path[0] = {str(bundle)!r}; sys.path.append({str(bundle / 'fallback')!r})\n"
        "import supervisor_app.worker as w\n"
        "names = [m.name for m in pkgutil.walk_packages(w.__path__, 'supervisor_app.worker.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "import gunicorn, uvicorn, wsproto, h11\n"
        "print(len(names), gunicorn.__file__)\n"
    )
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120, cwd="/")
    assert done.returncode == 0, done.stderr
    count, gunicorn_file = done.stdout.split()
    assert int(count) >= 25 and gunicorn_file.startswith(str(bundle)), done.stdout
