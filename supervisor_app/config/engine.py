"""Settings of `smc serve` in engine mode (the user's own model server behind smc's nginx) and of
sidecar programs, and the frozen EngineConfig they make.

Engine mode is chosen when SMC_ENGINE_COMMAND (or LAUNCH_COMMAND, the name images written for
model-hosting-container-standards use) is set. The shared serve settings (port, timeout, payload
limit, grace, start-up timeout) still come from ServeConfig.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from urllib.parse import urlsplit

from supervisor_app.config.core import Config
from supervisor_app.config.settings import (
    Setting,
    parse_bool,
    parse_int,
    parse_positive_int,
    parse_seconds,
    parse_str,
    read_settings,
)
from supervisor_app.config.engine_args import flags_from_env, parse_args_prefix
from supervisor_app.errors import ConfigError


def parse_url(name: str, raw: str) -> tuple[str, int]:
    """`http://HOST:PORT` -> (host, port); nothing else (no path, no https: it is a loopback hop)."""
    text = raw.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        parts, port = None, None
    if parts is None or parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/") \
            or parts.query:
        raise ConfigError(f"{name}={raw!r} is not an engine address",
                          hint=f"set {name} to http://HOST:PORT, e.g. http://127.0.0.1:8000 (no path)")
    return parts.hostname, port or 80


def parse_path(name: str, raw: str) -> str:
    text = raw.strip()
    if not text.startswith("/") or any(c.isspace() or c in "'\";{}" for c in text):
        raise ConfigError(f"{name}={raw!r} is not a URL path",
                          hint=f"set {name} to a path starting with /, e.g. {name}=/v1/chat/completions")
    return text


AUTO_ROUTE = "auto"


def parse_invocations_path(name: str, raw: str) -> str:
    """A fixed engine path, or `auto`: the route chosen per request from the JSON body."""
    if raw.strip().lower() == AUTO_ROUTE:
        return AUTO_ROUTE
    try:
        return parse_path(name, raw)
    except ConfigError as exc:
        raise ConfigError(exc.message, hint=f"set {name} to a path starting with /, e.g. /v1/chat/completions, "
                                            "or to `auto` (route by the JSON body's messages/prompt/input)") from None


ADAPTER_MODES = ("passthrough", "vllm", "sglang")


def parse_adapter_mode(name: str, raw: str) -> str:
    text = raw.strip().lower()
    if text not in ADAPTER_MODES:
        raise ConfigError(f"{name}={raw!r} is not an adapter mode",
                          hint=f"set {name} to one of {', '.join(ADAPTER_MODES)}: passthrough leaves /adapters "
                               "to the engine; vllm or sglang make smc answer it with that engine's LoRA routes")
    return text


def parse_signal(name: str, raw: str) -> int:
    text = raw.strip().upper().removeprefix("SIG")
    try:
        return int(signal.Signals["SIG" + text]) if not text.isdigit() else int(signal.Signals(int(text)))
    except (KeyError, ValueError):
        raise ConfigError(f"{name}={raw!r} is not a signal",
                          hint=f"set {name} to a signal name such as TERM, INT, QUIT or HUP") from None


def parse_nonnegative(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative", hint=f"set {name} to 0 or more")
    return value


G = "engine"
DEFAULT_URL = "http://127.0.0.1:8000"

ENGINE_SETTINGS: tuple[Setting, ...] = (
    Setting("command", ("SMC_ENGINE_COMMAND", "LAUNCH_COMMAND"), parse_str, None,
            "Engine mode: a shell command (run by /bin/sh in its own process group) that starts your "
            "model server, e.g. `mlserver start /opt/ml/model` or `vllm serve ...`. smc supervises it "
            "and fronts it with nginx on the SageMaker port. `LAUNCH_COMMAND` is accepted too.", G),
    Setting("url", ("SMC_ENGINE_URL",), parse_url, DEFAULT_URL,
            "Where the engine listens, `http://HOST:PORT` (default http://127.0.0.1:8000); must not be "
            "the SageMaker port.", G),
    Setting("health_path", ("SMC_ENGINE_HEALTH_PATH",), parse_path, "/health",
            "GET path of the engine's health check: smc's /ping is 200 only while it answers 2xx.", G),
    Setting("invocations_path", ("SMC_ENGINE_INVOCATIONS_PATH",), parse_invocations_path, "/invocations",
            "Where POST /invocations goes on the engine, e.g. /v1/chat/completions; `auto` picks the "
            "OpenAI route per request from the JSON body (`messages` -> /v1/chat/completions, `prompt` -> "
            "/v1/completions, `input` -> /v1/embeddings, else 400), and `route=/v1/...` in "
            "X-Amzn-SageMaker-Custom-Attributes overrides it. See docs/engines.md.", G),
    Setting("args_from", ("SMC_ENGINE_ARGS_FROM",), parse_args_prefix, None,
            "A variable prefix such as SM_VLLM_ or SM_SGLANG_: each variable with it becomes an engine flag "
            "appended to the command (SM_VLLM_MAX_MODEL_LEN=4096 -> --max-model-len 4096; `true` -> the bare "
            "flag; `false` -> nothing), in sorted name order, as AWS's vLLM and SGLang images do.", G),
    Setting("adapters", ("SMC_ENGINE_ADAPTERS",), parse_adapter_mode, "passthrough",
            "LoRA adapters (`POST /adapters`, `DELETE /adapters/{name}`, X-Amzn-SageMaker-Adapter-Identifier): "
            "`passthrough` sends them to the engine untouched (for engines that serve them, as vLLM with "
            "model-hosting-container-standards does); `vllm` or `sglang` make smc answer them with that engine's "
            "load/unload routes and keep the loaded set (duplicate 409, unknown identifier 404). See docs/engines.md.", G),
    Setting("max_restarts", ("SMC_ENGINE_MAX_RESTARTS", "ENGINE_MAX_START_RETRIES", "PROCESS_MAX_START_RETRIES"),
            parse_nonnegative, 3,
            "Restarts of a crashed or unhealthy engine before smc gives up and exits 1 with the cause and "
            "the engine's stderr tail. The count starts again once the engine has been healthy for "
            "SMC_RESTART_WINDOW_SECONDS.", G),
    Setting("auto_recovery", ("PROCESS_AUTO_RECOVERY",), parse_bool, True,
            "model-hosting-container-standards' switch: `false` means the first engine failure ends smc.", G),
    Setting("stop_signal", ("SMC_ENGINE_STOP_SIGNAL",), parse_signal, "TERM",
            "Signal that asks the engine's process group to stop; SIGKILL follows after the grace.", G),
    Setting("health_interval_s", ("SMC_ENGINE_HEALTH_INTERVAL_SECONDS",), parse_seconds, 1.0,
            "Seconds between health checks of a healthy engine (a starting one is checked every 50 ms).", G),
    Setting("health_failures", ("SMC_ENGINE_HEALTH_FAILURES",), parse_positive_int, 5,
            "Failed health checks in a row after which the engine is restarted (/ping is 503 from the "
            "first failure).", G),
    Setting("programs_file", ("SMC_PROGRAMS",), parse_str, None,
            "A supervisord-style ini file whose [program:NAME] sections smc runs beside the server "
            "(serve) or the script (train); `[program:engine]` replaces SMC_ENGINE_COMMAND. See docs/engines.md.", G),
)


@dataclass(frozen=True)
class EngineConfig:
    command: str | None  # None: not engine mode (unless a programs file names an engine)
    host: str
    port: int
    health_path: str
    invocations_path: str
    max_restarts: int
    stop_signal: int
    health_interval_s: float
    health_failures: int
    programs_file: str | None
    args_from: str | None = None  # SMC_ENGINE_ARGS_FROM's prefix
    args: tuple[str, ...] = ()  # the flags its variables make, appended to the engine's command
    adapters: str = "passthrough"  # SMC_ENGINE_ADAPTERS: passthrough | vllm | sglang

    @property
    def auto_route(self) -> bool:
        return self.invocations_path == AUTO_ROUTE

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def load_engine_config(config: Config) -> EngineConfig:
    values = read_settings(ENGINE_SETTINGS, config.environ)
    # Defaults are declared as people write them (for the docs table); parse them here.
    url = values.pop("url")
    host, port = parse_url("SMC_ENGINE_URL", url) if isinstance(url, str) else url
    if isinstance(values["stop_signal"], str):
        values["stop_signal"] = parse_signal("SMC_ENGINE_STOP_SIGNAL", values["stop_signal"])
    command = values.pop("command")
    if command is not None and not command.strip():
        command = None
    if not values.pop("auto_recovery"):
        values["max_restarts"] = 0
    if values["args_from"] is not None:
        values["args"] = flags_from_env(values["args_from"], config.environ)
    return EngineConfig(command=command, host=host, port=port, **values)


__all__ = ["ADAPTER_MODES", "AUTO_ROUTE", "ENGINE_SETTINGS", "EngineConfig", "load_engine_config"]
