"""What the worker side needs to know, as one frozen value that crosses a process boundary.

Under the embedded interpreter the gunicorn master is a fork of the supervisor and gets this value
directly; under the image's Python it is written to the run dir as JSON (to_json) and read back by
worker/boot.py (from_json). The supervisor builds it from ServeConfig (serve/worker_plan.py), so
nothing here imports the supervising side, and this module imports on CPython 3.9.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

MIB = 1024 * 1024


@dataclass(frozen=True)
class MmeSettings:
    """SAGEMAKER_MULTI_MODEL=true (read by config/mme.py)."""

    model_roots: Tuple[Path, ...]
    memory_limit_mb: Optional[int]
    memory_headroom_mb: int
    sync_timeout_s: Optional[float]
    handler_dirs: Tuple[Path, ...]  # where the image's handler may be, first match wins


@dataclass(frozen=True)
class WorkerSettings:
    run_dir: Path
    model_dir: Path
    code_dir: Path
    code_dir_requested: Optional[str]  # SAGEMAKER_SUBMIT_DIRECTORY as given, for messages
    code_dirs_searched: Tuple[Path, ...]
    code_dir_rule: str  # where the code is looked for, in words, for hints
    module_name: str  # the handler module (SAGEMAKER_PROGRAM without .py)
    wsgi_app: Optional[str]
    asgi_app: Optional[str]
    default_accept: str
    timeout_s: float
    gunicorn_timeout_s: float
    stop_grace_s: float
    max_payload_mb: int
    batch_strategy: str
    max_concurrent_transforms: Optional[int]
    preload_model: bool
    workers: int
    log_level: int
    embedded: bool  # smc's own interpreter: SMC_PREFIX's site dirs join sys.path (usersite.py)
    prefix: Path
    multi_model: Optional[MmeSettings] = None
    batch_size: int = 1  # SMC_BATCH_SIZE: 1 = no dynamic batching (worker/batching.py)
    batch_delay_ms: float = 0.0
    sessions_path: Optional[str] = None  # SAGEMAKER_ENABLE_STATEFUL_SESSIONS: the store (worker/sessions/store.py)
    sessions_expiration_s: float = 0.0

    @property
    def max_payload_bytes(self) -> int:
        """0 means no limit."""
        return self.max_payload_mb * MIB

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)

    @classmethod
    def from_json(cls, text: str) -> WorkerSettings:
        raw: Dict[str, Any] = json.loads(text)
        mme = raw.pop("multi_model")
        paths = {"run_dir", "model_dir", "code_dir", "prefix"}
        values = {k: Path(v) if k in paths else v for k, v in raw.items()}
        values["code_dirs_searched"] = tuple(Path(p) for p in raw["code_dirs_searched"])
        if mme is not None:
            mme = MmeSettings(
                model_roots=tuple(Path(p) for p in mme["model_roots"]),
                memory_limit_mb=mme["memory_limit_mb"],
                memory_headroom_mb=mme["memory_headroom_mb"],
                sync_timeout_s=mme["sync_timeout_s"],
                handler_dirs=tuple(Path(p) for p in mme["handler_dirs"]),
            )
        return cls(multi_model=mme, **values)


__all__ = ["MmeSettings", "WorkerSettings"]
