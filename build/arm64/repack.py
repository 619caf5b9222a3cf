"""dist/smc-aarch64 from the last full arm64 build (the base) and this checkout's dist/smc.

Why: PyInstaller bundles the machine it runs on, so a full build of dist/smc-aarch64 runs under
emulation here (build/arm64/binary.sh: minutes). Most of what the one-file binary holds does not
depend on smc's own sources: the aarch64 bootloader, CPython and its libraries, the standard library
and the pinned packages. What does is the same on both architectures: smc's modules (bytecode of
the same CPython 3.11.2), its entry script (bytecode) and the worker bundle (a zip of source).

So when only smc's own sources changed, the aarch64 binary is the base with its own entries replaced
by dist/smc's, written in PyInstaller's archive formats (a PKG holding a PYZ) and added to the
base's bootloader as the ELF section PyInstaller uses (pydata). Whether only smc's own sources
changed is binary.sh's question, answered with `manifest`: the foreign entries (all but smc's own)
that the x86_64 build collects now must be those it collected beside the base, else a full build.

    python repack.py manifest BINARY                     foreign entry names, one a line
    python repack.py repack BASE NEW BOOTLOADER OUT      the re-packed binary ($OBJCOPY adds pydata)

Run it with a Python of the binaries' version (the build venv's): the PYZ's table is marshalled.
"""

from __future__ import annotations

import marshal
import os
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass, replace

# The PKG's trailer (the "cookie"), and each entry of its table: network byte order.
COOKIE = struct.Struct("!8sIIII64s")  # magic, archive length, table offset, table length, pyvers, libpython
ENTRY = struct.Struct("!IIIIBc")  # entry length, offset, stored length, length, compressed, typecode
PKG_MAGIC = b"MEI\014\013\012\013\016"
PYZ_MAGIC = b"PYZ\0"
PYZ_HEADER_LENGTH = 17  # magic, bytecode magic, table offset, then unused bytes

OWN_PACKAGE = "supervisor_app"
ENTRY_SCRIPT = "__main__"  # supervisor_app/__main__.py, the spec's script
WORKER_BUNDLE = "smc-worker.zip"  # build/worker_bundle.py


class RepackError(Exception):
    """A binary that is not what repack expects; the message says which and why."""


@dataclass(frozen=True)
class Item:
    """One stored entry of a PKG or a PYZ, its bytes as stored (compressed or not)."""

    name: str
    typecode: str
    data: bytes
    length: int = 0  # uncompressed (PKG entries)
    compressed: bool = False


@dataclass(frozen=True)
class Pkg:
    items: tuple[Item, ...]
    pyvers: int
    libpython: bytes


@dataclass(frozen=True)
class Pyz:
    items: tuple[Item, ...]
    bytecode_magic: bytes


def own_pkg_item(item: Item) -> bool:
    return (item.typecode == "s" and item.name == ENTRY_SCRIPT) or item.name == WORKER_BUNDLE


def own_module(name: str) -> bool:
    return name == OWN_PACKAGE or name.startswith(OWN_PACKAGE + ".")


def read_pkg(path: str) -> Pkg:
    with open(path, "rb") as binary:
        blob = binary.read()
    at = blob.rfind(PKG_MAGIC)
    if at < 0:
        raise RepackError(f"{path}: no PyInstaller archive in it (is it a one-file PyInstaller binary?)")
    magic, archive_length, table_offset, table_length, pyvers, libpython = COOKIE.unpack_from(blob, at)
    start = at + COOKIE.size - archive_length
    table = blob[start + table_offset:start + table_offset + table_length]
    items, cursor = [], 0
    while cursor < len(table):
        entry_length, offset, stored, length, compressed, typecode = ENTRY.unpack_from(table, cursor)
        name = table[cursor + ENTRY.size:cursor + entry_length].rstrip(b"\0").decode("utf-8")
        items.append(Item(name, typecode.decode("ascii"), blob[start + offset:start + offset + stored],
                          length, bool(compressed)))
        cursor += entry_length
    return Pkg(tuple(items), pyvers, libpython)


def write_pkg(pkg: Pkg) -> bytes:
    out, table = bytearray(), bytearray()
    for item in pkg.items:
        name = item.name.encode("utf-8") + b"\0"
        name += b"\0" * (-(ENTRY.size + len(name)) % 16)  # the bootloader reads entries 16-byte aligned
        table += ENTRY.pack(ENTRY.size + len(name), len(out), len(item.data), item.length,
                            int(item.compressed), item.typecode.encode("ascii")) + name
        out += item.data
    table_offset = len(out)
    out += table
    out += COOKIE.pack(PKG_MAGIC, len(out) + COOKIE.size, table_offset, len(table), pkg.pyvers, pkg.libpython)
    return bytes(out)


def pyz_of(pkg: Pkg, path: str) -> tuple[int, Pyz]:
    found = [i for i, item in enumerate(pkg.items) if item.typecode == "z"]
    if len(found) != 1:
        raise RepackError(f"{path}: {len(found)} PYZ archives in its PKG, 1 expected")
    item = pkg.items[found[0]]
    data = zlib.decompress(item.data) if item.compressed else item.data
    if data[:4] != PYZ_MAGIC:
        raise RepackError(f"{path}: its PYZ entry {item.name!r} does not start with the PYZ magic")
    (table_offset,) = struct.unpack_from("!i", data, 8)
    table = marshal.loads(data[table_offset:])
    items = tuple(Item(name, str(kind), data[offset:offset + length]) for name, (kind, offset, length) in table)
    return found[0], Pyz(items, data[4:8])


def write_pyz(pyz: Pyz) -> bytes:
    out, table = bytearray(b"\0" * PYZ_HEADER_LENGTH), []
    for item in pyz.items:
        table.append((item.name, (int(item.typecode), len(out), len(item.data))))
        out += item.data
    table_offset = len(out)
    out += marshal.dumps(table)
    out[0:12] = PYZ_MAGIC + pyz.bytecode_magic + struct.pack("!i", table_offset)
    return bytes(out)


def manifest(path: str) -> list[str]:
    """What a build collected besides smc's own code: PKG entries as `typecode name`, PYZ modules
    as `pyz name`. Equal manifests of two x86_64 builds mean the same import closure."""
    pkg = read_pkg(path)
    _, pyz = pyz_of(pkg, path)
    lines = [f"{item.typecode} {item.name}" for item in pkg.items if not own_pkg_item(item)]
    lines += [f"pyz {item.name}" for item in pyz.items if not own_module(item.name)]
    return sorted(lines)


def plan(base: Pkg, base_pyz: Pyz, new: Pkg, new_pyz: Pyz, pyz_index: int) -> Pkg:
    """The base's PKG with its own entries and modules replaced by the new build's (pure)."""
    if base_pyz.bytecode_magic != new_pyz.bytecode_magic or base.pyvers != new.pyvers:
        raise RepackError("the base and the new binary were built by different CPython versions "
                          f"({base.pyvers} and {new.pyvers}): a full build is needed")
    new_own = {item.name: item for item in new.items if own_pkg_item(item)}
    missing = {ENTRY_SCRIPT, WORKER_BUNDLE} - set(new_own)
    if missing:
        raise RepackError(f"the new binary lacks {sorted(missing)}: not a build of spec/smc.spec")
    modules = [item for item in base_pyz.items if not own_module(item.name)]
    modules += [item for item in new_pyz.items if own_module(item.name)]
    modules.sort(key=lambda item: item.name)  # the order PyInstaller writes them in
    pyz_item = base.items[pyz_index]
    raw = write_pyz(Pyz(tuple(modules), base_pyz.bytecode_magic))
    pyz_item = replace(pyz_item, data=zlib.compress(raw, 9) if pyz_item.compressed else raw, length=len(raw))
    items = []
    for i, item in enumerate(base.items):
        if i == pyz_index:
            item = pyz_item
        elif own_pkg_item(item):
            item = new_own[item.name]
        items.append(item)
    return replace(base, items=tuple(items))


def repack(base_path: str, new_path: str, bootloader: str, out_path: str) -> None:
    base, new = read_pkg(base_path), read_pkg(new_path)
    pyz_index, base_pyz = pyz_of(base, base_path)
    _, new_pyz = pyz_of(new, new_path)
    pkg = plan(base, base_pyz, new, new_pyz, pyz_index)
    pkg_path = out_path + ".pkg"
    with open(pkg_path, "wb") as out:
        out.write(write_pkg(pkg))
    try:
        with open(bootloader, "rb") as source, open(out_path + ".tmp", "wb") as out:
            out.write(source.read())
        # As PyInstaller does on Linux. An x86_64 machine's objcopy does not read aarch64 ELF files:
        # binary.sh names binutils-aarch64-linux-gnu's in OBJCOPY.
        objcopy = os.environ.get("OBJCOPY", "objcopy")
        done = subprocess.run([objcopy, "--add-section", f"pydata={pkg_path}", out_path + ".tmp"],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RepackError(f"{objcopy} --add-section pydata on {bootloader} failed: {done.stderr.strip()}")
    finally:
        os.unlink(pkg_path)
    check(out_path + ".tmp", pkg)
    os.chmod(out_path + ".tmp", 0o755)
    os.replace(out_path + ".tmp", out_path)


def check(path: str, expected: Pkg) -> None:
    """Read the written binary back: the same entries, in order, with the same bytes."""
    written = read_pkg(path)
    if written != expected:
        raise RepackError(f"{path}: the archive read back differs from the one written")


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "manifest":
        print("\n".join(manifest(argv[1])))
        return 0
    if len(argv) == 5 and argv[0] == "repack":
        repack(*argv[1:])
        return 0
    print(__doc__.split("\n\n")[-2], file=sys.stderr)
    return 2


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RepackError as error:
        print(f"arm64-repack: {error}", file=sys.stderr)
        sys.exit(1)
