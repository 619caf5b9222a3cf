"""The repository's own shape: no binaries committed, small modules, supervision below serve and
train, and the loops change a child's state only through its transitions. Read from the files
git tracks (nothing is built or run)."""

from __future__ import annotations

import ast
import re
import subprocess

from tests.conftest import ROOT

MAX_TRACKED_BYTES = 1_000_000
MAX_MODULE_LINES = 400


def _tracked() -> list[str]:
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in out.decode().split("\0") if name and (ROOT / name).is_file()]


def _imports(path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_no_tracked_file_is_over_1_mb():
    # Binaries and downloaded wheels stay out of the repository (a 10.6 MB wheel once sat at its root).
    big = {name: (ROOT / name).stat().st_size for name in _tracked()}
    assert not {name: size for name, size in big.items() if size > MAX_TRACKED_BYTES}


def test_no_module_is_over_400_lines():
    long = {}
    for name in _tracked():
        if name.startswith(("supervisor_app/", "bench/")) and name.endswith(".py"):
            lines = (ROOT / name).read_text().count("\n")
            if lines > MAX_MODULE_LINES:
                long[name] = lines
    assert not long


def test_train_imports_nothing_from_serve_and_supervision_neither():
    wrong = {}
    for path in sorted((ROOT / "supervisor_app").rglob("*.py")):
        package = path.relative_to(ROOT / "supervisor_app").parts[0]
        if package not in ("train", "supervision"):
            continue
        bad = {name for name in _imports(path) if name.startswith("supervisor_app.serve")}
        if package == "supervision":
            bad |= {name for name in _imports(path) if name.startswith("supervisor_app.train")}
        if bad:
            wrong[str(path.relative_to(ROOT))] = sorted(bad)
    assert not wrong


def test_the_mms_oracle_is_pinned_everywhere_it_is_installed():
    # multi-model-server unpinned in one place meant a bench or an MME test ran a different oracle.
    from tests.serve.toolkit_oracle import MMS_VERSION

    specs = {}
    for name in _tracked():
        if name.startswith(("tests/", "bench/")) and name.endswith(".py"):
            for spec in re.findall(r"[\"']multi-model-server([^\"']*)[\"']", (ROOT / name).read_text()):
                specs.setdefault(spec, []).append(name)
    assert specs and set(specs) <= {f"=={MMS_VERSION}", "=={MMS_VERSION}"}, specs


def test_the_benches_share_one_readiness_wait():
    defined = [name for name in _tracked() if name.startswith("bench/") and name.endswith(".py")
               and "def wait_ping(" in (ROOT / name).read_text()]
    assert defined == ["bench/ping.py"]


def test_loops_change_a_childs_state_only_through_its_transitions():
    # Child.to() refuses a transition the table does not list; a plain assignment would skip it.
    assigned = {}
    for path in sorted((ROOT / "supervisor_app").rglob("*.py")):
        if path.name == "children.py" and path.parent.name == "supervision":
            continue
        hits = [n for n, line in enumerate(path.read_text().splitlines(), 1) if re.search(r"\.state = State\.", line)]
        if hits:
            assigned[str(path.relative_to(ROOT))] = hits
    assert not assigned
