"""build/arm64/repack.py on the real x86_64 dist/smc, natively: its archive read and written back
runs, and an own module changed in the new binary is what the re-packed one runs. (That the
re-packed aarch64 binary works is tests/arm64/test_smoke.py's, under emulation.)"""

from __future__ import annotations

import importlib.util
import marshal
import subprocess
import sys
import zlib
from dataclasses import replace
from pathlib import Path

import pytest

from tests.conftest import ROOT

SMC = ROOT / "dist" / "smc"


def load_repack():
    spec = importlib.util.spec_from_file_location("smc_repack", ROOT / "build" / "arm64" / "repack.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


repack = load_repack()

pytestmark = pytest.mark.skipif(not SMC.is_file(), reason="needs dist/smc (make binary)")


@pytest.fixture(scope="module")
def bootloader(tmp_path_factory) -> Path:
    """dist/smc without its archive: the bootloader PyInstaller started from."""
    path = tmp_path_factory.mktemp("boot") / "run"
    subprocess.run(["objcopy", "--remove-section", "pydata", str(SMC), str(path)], check=True)
    return path


def write_binary(pkg, bootloader: Path, out: Path) -> None:
    pkg_path = out.with_suffix(".pkg")
    pkg_path.write_bytes(repack.write_pkg(pkg))
    out.write_bytes(bootloader.read_bytes())
    subprocess.run(["objcopy", "--add-section", f"pydata={pkg_path}", str(out)], check=True)
    out.chmod(0o755)


def smc_version(binary: Path) -> str:
    return subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60,
                          check=True).stdout.strip()


def test_repacked_onto_itself_runs_and_collects_the_same(tmp_path, bootloader):
    out = tmp_path / "smc"
    repack.repack(str(SMC), str(SMC), str(bootloader), str(out))
    assert smc_version(out) == smc_version(SMC)
    assert repack.manifest(str(out)) == repack.manifest(str(SMC))
    assert [i.name for i in repack.read_pkg(str(out)).items] == [i.name for i in repack.read_pkg(str(SMC)).items]


def test_the_new_binarys_own_module_replaces_the_bases(tmp_path, bootloader):
    """A new binary whose supervisor_app/__init__.py says another version: the re-packed binary
    (base: dist/smc) says it too, and the manifest (foreign entries only) does not change."""
    pkg = repack.read_pkg(str(SMC))
    index, pyz = repack.pyz_of(pkg, str(SMC))
    source = (ROOT / "supervisor_app" / "__init__.py").read_text().replace('"0.1.0"', '"9.9.9-repacked"')
    assert "9.9.9-repacked" in source
    code = zlib.compress(marshal.dumps(compile(source, "supervisor_app/__init__.py", "exec")))
    modules = tuple(replace(item, data=code) if item.name == "supervisor_app" else item for item in pyz.items)
    raw = repack.write_pyz(replace(pyz, items=modules))
    items = list(pkg.items)
    items[index] = replace(items[index], data=raw, length=len(raw), compressed=False)
    new = tmp_path / "new"
    write_binary(replace(pkg, items=tuple(items)), bootloader, new)
    assert smc_version(new) == "smc 9.9.9-repacked"

    out = tmp_path / "smc"
    repack.repack(str(SMC), str(new), str(bootloader), str(out))
    assert smc_version(out) == "smc 9.9.9-repacked"
    assert repack.manifest(str(out)) == repack.manifest(str(SMC))


def test_manifest_names_foreign_entries_only():
    lines = repack.manifest(str(SMC))
    assert "pyz json" in lines and "pyz flask" in lines
    assert not [line for line in lines if "supervisor_app" in line or "smc-worker.zip" in line]
    assert not [line for line in lines if line == "s __main__"]


def test_a_binary_of_another_python_is_refused(tmp_path):
    pkg = repack.read_pkg(str(SMC))
    index, pyz = repack.pyz_of(pkg, str(SMC))
    other = replace(pkg, pyvers=pkg.pyvers + 1)
    with pytest.raises(repack.RepackError, match="different CPython versions"):
        repack.plan(pkg, pyz, other, pyz, index)


def test_a_file_without_an_archive_is_named(tmp_path):
    plain = tmp_path / "plain"
    plain.write_bytes(b"\x7fELF not a pyinstaller binary")
    with pytest.raises(repack.RepackError, match=f"{plain}: no PyInstaller archive"):
        repack.read_pkg(str(plain))
