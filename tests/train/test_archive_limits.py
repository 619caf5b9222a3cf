"""Submit-directory archives are extracted whole or not at all, within size and member-count
limits (SMC_MAX_ARCHIVE_BYTES, SMC_MAX_ARCHIVE_FILES): a 1 MB tar.gz bomb is refused at its
first header, and a refused or broken archive leaves nothing in the code dir (issue 9, item 10)."""

from __future__ import annotations

import io
import os
import struct
import tarfile
import time
import zlib
from pathlib import Path

import pytest
from test_submit_dir import s3_server  # noqa: F401 (a fixture: moto's S3 server on loopback)
from trainkit import failure, hyperparameters, make_job, train_env

TRAIN_PY = b"print('submitted code ran')\n"
MIB = 1 << 20


def _bomb(path: Path, mib: int) -> Path:
    """A valid tar.gz of about 1 MB whose one member, train.py, is `mib` MiB of zeros. Built from
    one deflate block repeated (after a full flush the compressor emits the same bytes), so making
    it takes a fraction of a second instead of compressing a gigabyte."""
    info = tarfile.TarInfo("train.py")
    info.size = mib * MIB
    head, zeros, trailer = info.tobuf(format=tarfile.GNU_FORMAT), b"\0" * MIB, b"\0" * 1024
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    parts = [comp.compress(head) + comp.flush(zlib.Z_FULL_FLUSH)]
    block = comp.compress(zeros) + comp.flush(zlib.Z_FULL_FLUSH)
    parts += [block * mib, comp.compress(trailer) + comp.flush()]
    crc = zlib.crc32(head)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    crc = zlib.crc32(trailer, crc)
    size = len(head) + mib * MIB + len(trailer)
    path.write_bytes(b"\x1f\x8b\x08\x00\0\0\0\0\x00\xff" + b"".join(parts) + struct.pack("<II", crc, size & 0xFFFFFFFF))
    return path


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _job(tmp_path: Path, archive: Path) -> Path:
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py", sagemaker_submit_directory=str(archive))
    return base


def _assert_nothing_left(base: Path) -> None:
    assert list((base / "code").iterdir()) == [], "a refused archive left files in the code dir"
    assert not [p for p in base.iterdir() if "smc-extract" in p.name], "the staging dir was left behind"


def test_a_1_mb_bomb_over_the_limit_is_refused_at_once_and_leaves_nothing(smc, tmp_path):
    archive = _bomb(tmp_path / "bomb.tar.gz", 1100)
    assert archive.stat().st_size < 1.5 * MIB
    base = _job(tmp_path, archive)
    started = time.monotonic()
    done = smc("train", env=train_env(base, SMC_MAX_ARCHIVE_BYTES="1G"))
    assert time.monotonic() - started < 10  # refused from the header, not after inflating 1.1 GB
    assert done.returncode == 1, done.stderr
    text = failure(base)
    assert text.startswith(f"refusing to extract {archive}: it expands to more than 1 GiB (SMC_MAX_ARCHIVE_BYTES=1073741824;")
    assert "raise SMC_MAX_ARCHIVE_BYTES" in text
    _assert_nothing_left(base)


def test_too_many_members_are_refused_and_leave_nothing(smc, tmp_path):
    files = {f"pkg/m{i}.py": b"" for i in range(50)}
    archive = _tar(tmp_path / "many.tar.gz", {"train.py": TRAIN_PY, **files})
    base = _job(tmp_path, archive)
    done = smc("train", env=train_env(base, SMC_MAX_ARCHIVE_FILES="20"))
    assert done.returncode == 1
    assert failure(base).startswith(f"refusing to extract {archive}: it has more than 20 members (SMC_MAX_ARCHIVE_FILES=20)")
    _assert_nothing_left(base)


def test_a_truncated_archive_leaves_nothing_half_extracted(smc, tmp_path):
    whole = _tar(tmp_path / "whole.tar.gz", {"train.py": TRAIN_PY, "big.bin": bytes(range(256)) * 4096})
    archive = tmp_path / "cut.tar.gz"
    archive.write_bytes(whole.read_bytes()[: whole.stat().st_size - 200])
    base = _job(tmp_path, archive)
    done = smc("train", env=train_env(base))
    assert done.returncode == 1
    assert failure(base).startswith(f"cannot extract {archive}")
    _assert_nothing_left(base)


def test_an_archive_within_the_limits_is_extracted(smc, tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", {"train.py": TRAIN_PY, "lib/a.py": b"A = 1\n"})
    base = _job(tmp_path, archive)
    done = smc("train", env=train_env(base, SMC_MAX_ARCHIVE_BYTES="1K", SMC_MAX_ARCHIVE_FILES="3"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "submitted code ran" in done.stdout
    assert sorted(p.name for p in (base / "code").iterdir()) == ["lib", "train.py"]
    assert not [p for p in base.iterdir() if "smc-extract" in p.name]


@pytest.mark.parametrize("value", ["lots", "0", "-5", "1X"])
def test_a_bad_limit_is_a_configuration_error(smc, tmp_path, value):
    archive = _tar(tmp_path / "ok.tar.gz", {"train.py": TRAIN_PY})
    base = _job(tmp_path, archive)
    done = smc("train", env=train_env(base, SMC_MAX_ARCHIVE_BYTES=value))
    assert done.returncode == 5
    assert f"SMC_MAX_ARCHIVE_BYTES={value!r} is not a size in bytes" in failure(base)


def test_staging_left_by_a_killed_smc_is_cleaned_and_does_not_count_as_code(smc, tmp_path):
    archive = _tar(tmp_path / "ok.tar.gz", {"train.py": TRAIN_PY})
    base = _job(tmp_path, archive)
    (base / "code" / ".smc-extract-abc123").mkdir()
    (base / "code" / ".smc-extract-abc123" / "half.py").write_text("x")
    (base / ".code.smc-extract-def456").mkdir()
    done = smc("train", env=train_env(base))
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in (base / "code").iterdir()) == ["train.py"]
    assert not [p for p in base.iterdir() if "smc-extract" in p.name]


def test_an_s3_archive_over_the_limit_is_refused_while_downloading(smc, tmp_path, s3_server):
    from test_submit_dir import CREDS, _upload

    archive = _tar(tmp_path / "big.tar.gz", {"train.py": TRAIN_PY, "noise.bin": os.urandom(4096)})
    _upload(s3_server, "my-bucket", "big/sourcedir.tar.gz", archive.read_bytes())
    base = make_job(tmp_path)
    hyperparameters(base, sagemaker_program="train.py", sagemaker_submit_directory="s3://my-bucket/big/sourcedir.tar.gz")
    done = smc("train", env=train_env(base, AWS_ENDPOINT_URL_S3=s3_server, SMC_MAX_ARCHIVE_BYTES="2K", **CREDS))
    assert done.returncode == 1
    assert failure(base).startswith("refusing to download s3://my-bucket/big/sourcedir.tar.gz: ")
    assert "over SMC_MAX_ARCHIVE_BYTES=2048" in failure(base)
    _assert_nothing_left(base)
