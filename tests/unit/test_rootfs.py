"""supervisor_app.rootfs: what train and serve require of the root before they start."""

from __future__ import annotations

import pytest

from supervisor_app import exitcodes, rootfs
from supervisor_app.errors import BootError


def test_proc_missing_names_an_absent_and_an_unmounted_proc(tmp_path):
    assert "does not exist" in rootfs.proc_missing(tmp_path / "proc")
    (tmp_path / "proc").mkdir()  # a chroot's empty mount point
    assert "is not mounted" in rootfs.proc_missing(tmp_path / "proc")
    (tmp_path / "proc" / "self").mkdir()
    assert rootfs.proc_missing(tmp_path / "proc") is None


def test_require_proc_fails_with_exit_3_and_how_to_mount_it(tmp_path):
    with pytest.raises(BootError) as raised:
        rootfs.require_proc(tmp_path)
    assert raised.value.exit_code == exitcodes.BOOT
    assert "mount -t proc proc ROOT/proc" in raised.value.hint


def test_hosts_file_missing(tmp_path):
    assert rootfs.hosts_file_missing(tmp_path / "hosts")
    (tmp_path / "hosts").write_text("127.0.0.1 localhost\n")
    assert not rootfs.hosts_file_missing(tmp_path / "hosts")
