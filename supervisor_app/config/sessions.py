"""Settings of stateful sessions (SAGEMAKER_ENABLE_STATEFUL_SESSIONS and friends, the names
model-hosting-container-standards reads), and the frozen SessionsConfig they make. Serve reads them
in both modes; docs/serve.md and docs/engines.md ("Stateful sessions") say what each one does."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.config.settings import Setting, choice, parse_bool, parse_int, parse_str, read_settings
from supervisor_app.errors import ConfigError

G = "serve (sessions)"
SHM = Path("/dev/shm")
STORE_NAME = "sagemaker_sessions"
SMC = "smc"
PASSTHROUGH = "passthrough"


def parse_expiration(name: str, raw: str) -> int:
    try:
        value = parse_int(name, raw)
    except ConfigError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name}={raw!r} is not a positive whole number of seconds",
                          hint=f"set {name} to the seconds a session lives from its creation, e.g. {name}=1200")
    return value


def parse_store_path(name: str, raw: str) -> str:
    if not raw.strip().startswith("/"):
        raise ConfigError(f"{name}={raw!r} is not an absolute directory",
                          hint=f"set {name} to an absolute path, e.g. {name}=/dev/shm/sagemaker_sessions")
    return raw.strip()


SESSIONS_SETTINGS: tuple[Setting, ...] = (
    Setting("enabled", ("SAGEMAKER_ENABLE_STATEFUL_SESSIONS",), parse_bool, False,
            "`true` (or `1`): stateful sessions. `{\"requestType\": \"NEW_SESSION\"}` opens one "
            "(X-Amzn-SageMaker-New-Session-Id), `{\"requestType\": \"CLOSE\"}` with X-Amzn-SageMaker-Session-Id "
            "closes it, and requests carrying the id get its state (handler mode: `context.session`) or reach "
            "the engine with the id. Off: session requests and the Session-Id header are refused (400) in "
            "handler mode and passed to the engine untouched in engine mode.", G),
    Setting("expiration_s", ("SAGEMAKER_SESSIONS_EXPIRATION",), parse_expiration, 1200,
            "Seconds a session lives, counted from its creation (use does not renew it).", G),
    Setting("path", ("SAGEMAKER_SESSIONS_PATH",), parse_store_path, None,
            "Directory of the session store, shared by every worker: one directory per session. Default: "
            "/dev/shm/sagemaker_sessions when /dev/shm is writable, else $TMPDIR/sagemaker_sessions.", G),
    Setting("engine_sessions", ("SMC_ENGINE_SESSIONS",), choice(SMC, PASSTHROUGH), SMC,
            "Engine mode with sessions on: `smc` (default) answers NEW_SESSION and CLOSE itself, refuses unknown "
            "ids and passes the X-Amzn-SageMaker-Session-Id header on to the engine; `passthrough` leaves the "
            "protocol to an engine that implements it (vLLM with model-hosting-container-standards).", G),
)


@dataclass(frozen=True)
class SessionsConfig:
    enabled: bool
    expiration_s: int
    path: Path
    path_requested: str | None  # SAGEMAKER_SESSIONS_PATH as given; None: the default was chosen
    engine_sessions: str  # smc | passthrough

    @property
    def smc_owns_engine_protocol(self) -> bool:
        return self.enabled and self.engine_sessions == SMC


def default_store_path(tmp_dir: Path, shm: Path = SHM) -> Path:
    """/dev/shm (memory, as MHCS and DJL keep sessions) when this user may write there."""
    if shm.is_dir() and os.access(shm, os.W_OK | os.X_OK):
        return shm / STORE_NAME
    return tmp_dir / STORE_NAME


def load_sessions_config(environ: Mapping[str, str], tmp_dir: Path, multi_model: bool = False) -> SessionsConfig:
    values = read_settings(SESSIONS_SETTINGS, environ)
    if values["enabled"] and multi_model:
        raise ConfigError(
            "stateful sessions (SAGEMAKER_ENABLE_STATEFUL_SESSIONS=true) are not available with SAGEMAKER_MULTI_MODEL=true",
            hint="unset SAGEMAKER_ENABLE_STATEFUL_SESSIONS for a multi-model endpoint, or serve one model",
        )
    requested = values.pop("path")
    path = Path(requested) if requested else default_store_path(tmp_dir)
    return SessionsConfig(path=path, path_requested=requested, **values)


__all__ = ["PASSTHROUGH", "SESSIONS_SETTINGS", "SMC", "SessionsConfig", "default_store_path", "load_sessions_config"]
