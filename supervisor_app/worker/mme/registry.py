"""The loaded-model registry every gunicorn worker shares: files in smc's private run dir.

  mme/registry.json    {"generation": N, "models": {name: {"url", "path"}},
                        "staged": {name: {"url", "path", "owner"}}}, replaced atomically
  mme/lock             flock held for each read-modify-write of the registry (milliseconds)
  mme/workers/PID      each worker's state: the generation it has applied and what failed

A load is staged first (every worker loads it, in parallel; invokes still answer 404), then
committed (visible to invokes) or dropped. A staged entry whose owner died is ignored.

A worker changes the registry, then signals its siblings (SIGUSR2, which wakes gunicorn's
select) and waits until each worker file shows the new generation. Files, not shared memory:
a worker killed with SIGKILL leaves nothing half-written behind, and its replacement reads the
registry like any other worker.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SYNC_SIGNAL = signal.SIGUSR2


@dataclass
class Snapshot:
    generation: int = 0
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    staged: dict[str, dict[str, Any]] = field(default_factory=dict)

    def live_staged(self) -> dict[str, dict[str, Any]]:
        return {n: e for n, e in self.staged.items() if _alive(int(e.get("owner", 0)))}


class Registry:
    """`name`: the registry's directory in the run dir: "mme" for models, "adapters" for the LoRA
    adapters of handler mode (worker/adapters.py), which share the mechanism."""

    def __init__(self, run_dir: Path, name: str = "mme") -> None:
        self.root = run_dir / name
        self.file = self.root / "registry.json"
        self.workers = self.root / "workers"
        for directory in (self.root, self.workers):
            directory.mkdir(mode=0o700, exist_ok=True)

    # -- the registry ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with open(self.root / "lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def read(self) -> Snapshot:
        try:
            data = json.loads(self.file.read_bytes())
        except FileNotFoundError:
            return Snapshot()
        return Snapshot(int(data["generation"]), dict(data["models"]), dict(data.get("staged", {})))

    def write(self, snapshot: Snapshot) -> None:
        """Call with the lock held."""
        temp = self.file.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps({"generation": snapshot.generation, "models": snapshot.models,
                                    "staged": snapshot.live_staged()}))
        os.replace(temp, self.file)

    def publish(self, snapshot: Snapshot) -> int:
        """Write the changed snapshot as the next generation, which every worker then applies (call
        with the lock held); returns that generation, for follow()."""
        snapshot.generation += 1
        self.write(snapshot)
        return snapshot.generation

    # -- workers ---------------------------------------------------------------------------------
    def report(self, generation: int, failed: dict[str, str]) -> None:
        """This worker has applied `generation`; `failed` names the models it could not load."""
        temp = self.workers / f".{os.getpid()}.tmp"
        temp.write_text(json.dumps({"generation": generation, "failed": failed}))
        os.replace(temp, self.workers / str(os.getpid()))

    def forget_self(self) -> None:
        (self.workers / str(os.getpid())).unlink(missing_ok=True)

    def siblings(self) -> dict[int, dict[str, Any]]:
        """State of the other live workers of this gunicorn master, by pid."""
        found: dict[int, dict[str, Any]] = {}
        me, master = os.getpid(), os.getppid()
        for entry in self.workers.iterdir():
            if not entry.name.isdigit() or int(entry.name) == me:
                continue
            pid = int(entry.name)
            if _parent(pid) != master:
                entry.unlink(missing_ok=True)  # a worker that died (SIGKILL skips the cleanup)
                continue
            try:
                found[pid] = json.loads(entry.read_text())
            except (OSError, ValueError):
                found[pid] = {"generation": -1, "failed": {}}
        return found

    def signal_siblings(self) -> None:
        for pid in self.siblings():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, SYNC_SIGNAL)


def follow(registry: Registry, target: int, sync: Callable[[], None], workers: int, timeout_s: float,
           heartbeat: Callable[[], None], on_slow: Callable[[list[int]], None]) -> dict[int, dict[str, Any]]:
    """Wake the other workers and wait until each has applied generation `target` (at most
    timeout_s: a busy worker follows before its next request); returns their states by pid."""
    sync()
    registry.signal_siblings()
    now = time.monotonic()
    deadline = now + timeout_s
    # A worker gunicorn is still booting has no state file yet; it loads everything at boot,
    # before its first request. Wait briefly for it, so a load right after start is complete.
    booting_deadline = now + _BOOTING_WAIT_S
    pause = 0.0002
    while True:
        siblings = registry.siblings()
        behind = [pid for pid, state in siblings.items() if state.get("generation", -1) < target]
        if not behind and (len(siblings) >= workers - 1 or time.monotonic() > booting_deadline):
            return siblings
        if time.monotonic() > deadline:
            on_slow(behind)
            return siblings
        heartbeat()
        time.sleep(pause)
        pause = min(pause * 1.5, 0.005)
        sync()  # another worker's change may be waiting on this one


_BOOTING_WAIT_S = 5.0


def failures(siblings: dict[int, dict[str, Any]], name: str | None) -> dict[int, str]:
    """{pid: why} for the workers (follow()'s states) that could not load `name`."""
    if name is None:
        return {}
    return {pid: state["failed"][name] for pid, state in siblings.items() if name in state.get("failed", {})}


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _parent(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[1])
