"""output/intermediate sync to S3, as sagemaker-training does for `sagemaker_s3_output`.

When the job's hyperparameters carry `sagemaker_s3_output` (an s3:// URL) and
/opt/ml/output/intermediate does not exist yet (when it does, the platform syncs it, and the
toolkit stays out of the way), smc creates the directory and uploads each file under it to
s3://BUCKET/PREFIX/$TRAINING_JOB_NAME/output/intermediate/RELATIVE/PATH as soon as it is closed
after writing (or renamed into place), and once more at the end of the job for any file whose
size or mtime changed since its last upload. The key layout is the toolkit's.

A thread of the smc process watches the tree with inotify (through libc, no extra package) and
uploads through smc's small S3 client; an upload failure is logged and never fails the job, as
with the toolkit.
"""

from __future__ import annotations

import ctypes
import os
import select
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor_app.config import Config

HYPERPARAMETER = "sagemaker_s3_output"
_IN_CLOSE_WRITE, _IN_MOVED_TO, _IN_CREATE, _IN_ISDIR, _IN_Q_OVERFLOW = 0x8, 0x80, 0x100, 0x40000000, 0x4000
_EVENT = struct.Struct("iIII")
_FINAL_PASS_BUDGET_S = 300.0


@dataclass(frozen=True)
class Plan:
    directory: Path
    bucket: str
    key_prefix: str  # PREFIX/JOB/output/intermediate


def plan(s3_output: str | None, directory: Path, job_name: str) -> tuple[Plan | None, str]:
    """What to sync, or None and why not. Pure: looks at nothing but its arguments and the dir."""
    if not s3_output:
        return None, f"no {HYPERPARAMETER} hyperparameter"
    url = urllib.parse.urlparse(s3_output)
    if url.scheme == "file":
        return None, "local output (file://)"
    if url.scheme != "s3" or not url.netloc:
        return None, f"{HYPERPARAMETER}={s3_output!r} is not an s3:// URL"
    if directory.exists():
        return None, f"{directory} exists already: the platform syncs it"
    prefix = "/".join(p for p in (url.path.strip("/"), job_name, "output", "intermediate") if p)
    return Plan(directory, url.netloc, prefix), ""


class Sync:
    """The running watcher thread; finish() stops it after a last pass."""

    def __init__(self, target: Plan, uploader: Any, log: Any) -> None:
        self.plan = target
        self.upload = uploader
        self.log = log
        self.uploaded: dict[str, tuple[int, int]] = {}  # relative path -> (size, mtime_ns) sent
        self.watches: dict[int, Path] = {}
        self.stopping = threading.Event()
        libc = ctypes.CDLL(None, use_errno=True)
        self._add = libc.inotify_add_watch
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self._watch_tree(target.directory)
        self.thread = threading.Thread(target=self._run, name="intermediate-sync", daemon=True)
        self.thread.start()

    def _watch_tree(self, top: Path) -> list[Path]:
        """Watch top and every directory below it; returns the files already there."""
        found = []
        for folder, _, files in os.walk(top):
            wd = self._add(self.fd, os.fsencode(folder), _IN_CLOSE_WRITE | _IN_MOVED_TO | _IN_CREATE)
            if wd >= 0:
                self.watches[wd] = Path(folder)
            found += [Path(folder) / name for name in files]
        return found

    def _run(self) -> None:
        while not self.stopping.is_set():
            self._drain(timeout_s=0.5)

    def _drain(self, timeout_s: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout_s)
        if not ready:
            return
        try:
            data = os.read(self.fd, 64 * 1024)
        except BlockingIOError:
            return
        offset = 0
        while offset + _EVENT.size <= len(data):
            wd, mask, _, length = _EVENT.unpack_from(data, offset)
            name = data[offset + _EVENT.size: offset + _EVENT.size + length].rstrip(b"\0")
            offset += _EVENT.size + length
            folder = self.watches.get(wd)
            if mask & _IN_Q_OVERFLOW or folder is None:
                continue  # the final pass catches whatever was missed
            path = folder / os.fsdecode(name)
            if mask & _IN_ISDIR:
                if mask & (_IN_CREATE | _IN_MOVED_TO):
                    for file in self._watch_tree(path):
                        self._send(file, "created_with_dir")
            elif mask & (_IN_CLOSE_WRITE | _IN_MOVED_TO):
                self._send(path, "closed")

    def _send(self, path: Path, why: str) -> None:
        try:
            stat = path.stat()
        except OSError:
            return  # deleted or a broken link, as the toolkit ignores them
        if not path.is_file():
            return
        relative = path.relative_to(self.plan.directory).as_posix()
        key = f"{self.plan.key_prefix}/{relative}"
        try:
            size = self.upload(path, self.plan.bucket, key)
        except Exception as exc:  # noqa: BLE001  an upload never fails the job
            self.log.warning("intermediate_upload_failed", path=str(path), key=key, error=str(exc))
            return
        self.uploaded[relative] = (stat.st_size, stat.st_mtime_ns)
        self.log.info("intermediate_uploaded", path=relative, key=f"s3://{self.plan.bucket}/{key}", bytes=size,
                      why=why)

    def finish(self) -> None:
        """Stop watching, handle pending events, then upload whatever changed since its last upload."""
        self.stopping.set()
        self.thread.join(timeout=_FINAL_PASS_BUDGET_S)
        self._drain(timeout_s=0)
        deadline = time.monotonic() + _FINAL_PASS_BUDGET_S
        for folder, _, files in os.walk(self.plan.directory):
            for name in files:
                path = Path(folder) / name
                relative = path.relative_to(self.plan.directory).as_posix()
                try:
                    stat = path.stat()
                except OSError:
                    continue
                if self.uploaded.get(relative) != (stat.st_size, stat.st_mtime_ns):
                    if time.monotonic() > deadline:
                        self.log.warning("intermediate_final_pass_cut", budget_s=_FINAL_PASS_BUDGET_S)
                        break
                    self._send(path, "final_pass")
        os.close(self.fd)
        self.log.info("intermediate_sync_finished", files=len(self.uploaded))


def start(config: Config, log: Any) -> Sync | None:
    """Start the sync if the job asks for it; never raises (the job's own config errors are
    reported by the training run)."""
    from supervisor_app.config.train import load_train_config
    from supervisor_app.errors import SmcError

    try:
        train = load_train_config(config)
    except SmcError:
        return None
    raw = train.hyperparameters.get(HYPERPARAMETER)
    target, why = plan(str(raw) if raw else None, config.layout.output_intermediate_dir,
                       train.environ.get("TRAINING_JOB_NAME", ""))
    if target is None:
        if raw:
            log.info("intermediate_sync_off", why=why)
        return None
    from supervisor_app.train import s3, s3_upload

    try:
        creds = s3.resolve_credentials(train.s3)
        target.directory.mkdir(parents=True)
        region = train.s3.region or "us-east-1"
        sync = Sync(target, lambda path, bucket, key: s3_upload.put_file(path, bucket, key, region, creds, train.s3),
                    log)
    except (SmcError, OSError) as exc:
        log.warning("intermediate_sync_unavailable", error=str(exc), url=raw)
        return None
    log.info("intermediate_sync_started", directory=str(target.directory),
             destination=f"s3://{target.bucket}/{target.key_prefix}/")
    return sync


def finish(sync: Sync | None) -> None:
    if sync is not None:
        sync.finish()
