"""What the make targets do, read with `make -n` and run on stand-in benches: every target installs
its own system packages, and `make bench` runs every bench to its end, failing on a crash and only
on a crash (a missed timing target is reported, not failed)."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys

from tests.conftest import ROOT


def _suite():
    spec = importlib.util.spec_from_file_location("bench_suite", ROOT / "bench" / "suite.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dry_run(target: str) -> str:
    return subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_bench_suite_runs_every_bench_after_a_crash_and_fails_only_for_the_crash(tmp_path):
    marks = tmp_path / "ran"
    benches = []
    for name, body in (("crashes", "raise SystemExit(3)"), ("misses", "print('target missed')"), ("meets", "pass")):
        path = tmp_path / f"{name}.py"
        path.write_text(f"open({str(marks)!r}, 'a').write('{name}\\n')\n{body}\n")
        benches.append([str(path)])
    crashed = _suite().run_all(benches, python=sys.executable)
    assert marks.read_text().split() == ["crashes", "misses", "meets"]  # the crash did not stop the others
    assert crashed == [(str(tmp_path / "crashes.py"), 3)]


def test_every_bench_in_the_suite_exists():
    for command in _suite().benches("dist/smc", skip_mms=False):
        assert (ROOT / command[0]).is_file(), command


def test_make_bench_runs_the_suite_and_ci_does_not_hide_its_exit():
    assert "bench/suite.py --smc dist/smc" in _dry_run("bench")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make bench$", ci, re.MULTILINE), "CI runs make bench and fails when it fails"
    assert not re.search(r"make bench\s*\|\|", ci)


def test_every_make_target_installs_its_own_system_packages():
    for target, group in (("demo", "demo"), ("test", "test"), ("bench", "bench"), ("images", "images")):
        assert f"bash build/system-deps.sh {group}" in _dry_run(target), target
    # Each tool the image scripts refuse to run without is in the images group (Docker itself excepted).
    listed = subprocess.run(["bash", "build/system-deps.sh", "--list", "images"], cwd=ROOT, capture_output=True,
                            text=True, check=True).stdout.split()
    needed = set()
    for script in ("base-image.sh", "static-binary.sh"):
        needed |= set(re.findall(r"missing \(apt-get install ([\w.-]+)\)", (ROOT / "build" / script).read_text()))
    assert needed and needed <= set(listed), (needed, listed)


def test_make_binary_arch_aarch64_builds_dist_smc_aarch64_with_its_own_system_packages():
    # -B: the commands even when dist/smc-aarch64 is up to date.
    dry = subprocess.run(["make", "-n", "-B", "binary", "ARCH=aarch64"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "bash build/system-deps.sh arm64" in dry and "build/arm64/binary.sh" in dry, dry
    listed = subprocess.run(["bash", "build/system-deps.sh", "--list", "arm64"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    needed = {"qemu-user-static"}
    for script in ("rootfs.sh", "qemu.sh"):
        text = (ROOT / "build" / "arm64" / script).read_text()
        needed |= set(re.findall(r"missing \(apt-get install ([\w.-]+)\)", text))
    assert "debootstrap" in needed and needed <= set(listed), (needed, listed)
    unknown = subprocess.run(["make", "-n", "binary", "ARCH=riscv64"], cwd=ROOT, capture_output=True,
                             text=True)
    assert "x86_64 or aarch64" in unknown.stdout + unknown.stderr


def test_make_images_arch_aarch64_builds_the_arm64_examples_with_the_arm64_binary():
    dry = subprocess.run(["make", "-n", "-B", "images", "ARCH=aarch64"], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout
    assert "build/arm64/binary.sh" in dry, dry
    assert f"SMC_ARCH=aarch64 SMC_BINARY={ROOT}/dist/smc-aarch64 bash build/images.sh" in dry, dry


def test_ci_builds_the_arm64_binary_so_its_smoke_test_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make binary ARCH=aarch64$", ci, re.MULTILINE)
    assert ci.index("make binary ARCH=aarch64") < ci.index("make test")
