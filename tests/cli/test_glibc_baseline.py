"""Every ELF file in dist/smc needs glibc 2.17 at most (manylinux2014's baseline), so the one file
starts on Amazon Linux 2, RHEL 7 and every newer distribution (build/python/build.sh makes it so).

The files checked are the ones the binary carries: the bootloader itself and everything its
archive unpacks (libpython, OpenSSL, extension modules, wheels' .so files), copied out of a
running smc's unpacked folder. `readelf -V` lists the symbol versions each one needs.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

# The newest symbol version each library may ask for: manylinux2014 (glibc 2.17, GCC 4.8's libstdc++).
BASELINE = {"GLIBC": (2, 17), "GLIBCXX": (3, 4, 19), "CXXABI": (1, 3, 7)}
NEEDED = re.compile(r"Name: (GLIBC|GLIBCXX|CXXABI)_([0-9.]+|PRIVATE)\b")


def needed_versions(path: Path) -> list[tuple[str, str]]:
    out = subprocess.run(["readelf", "-V", "-W", str(path)], capture_output=True, text=True, check=True).stdout
    return NEEDED.findall(out)


def too_new(family: str, version: str) -> bool:
    if version == "PRIVATE":
        return True  # glibc's private symbols change with every release
    return tuple(int(part) for part in version.split(".")) > BASELINE[family]


def elf_files(root: Path) -> list[Path]:
    found = []
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as handle:
                if handle.read(4) == b"\x7fELF":
                    found.append(path)
    return found


@pytest.fixture(scope="module")
def unpacked(smc_binary: Path, tmp_path_factory) -> Path:
    if shutil.which("readelf") is None:
        pytest.fail("readelf is needed (apt-get install binutils)")
    dest = tmp_path_factory.mktemp("unpacked") / "bundle"
    subprocess.run([str(smc_binary), "python", "-c", "import shutil, sys; shutil.copytree(sys._MEIPASS, sys.argv[1])",
                    str(dest)], check=True, timeout=60)
    return dest


def test_every_elf_file_in_the_binary_needs_glibc_2_17_at_most(smc_binary: Path, unpacked: Path):
    files = [smc_binary, *elf_files(unpacked)]
    # The bundle's core must be there, or the check proves nothing.
    names = {path.name for path in files}
    assert {"libpython3.11.so.1.0", "libssl.so.3", "libcrypto.so.3"} <= names, sorted(names)
    assert len(files) > 50, f"only {len(files)} ELF files found in {unpacked}"
    offenders = [
        f"{path.relative_to(unpacked) if path != smc_binary else path.name}: {family}_{version}"
        for path in files
        for family, version in needed_versions(path)
        if too_new(family, version)
    ]
    assert not offenders, (
        "these files need symbol versions newer than manylinux2014's baseline (GLIBC_2.17, "
        "GLIBCXX_3.4.19, CXXABI_1.3.7); build them with build/python/ or take manylinux2014 wheels:\n"
        + "\n".join(sorted(set(offenders)))
    )


def test_the_check_sees_a_newer_symbol_version():
    """The parser is not blind: the build machine's own readelf (Debian 12) needs versions past 2.17."""
    versions = needed_versions(Path(shutil.which("readelf")))
    assert any(too_new(family, version) for family, version in versions), versions
