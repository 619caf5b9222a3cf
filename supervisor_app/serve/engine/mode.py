"""Which serve mode the settings ask for: engine mode (SMC_ENGINE_COMMAND / LAUNCH_COMMAND, or a
programs file with an engine program), or None for the built-in handler server."""

from __future__ import annotations

from supervisor_app.config import Config
from supervisor_app.config.engine import load_engine_config
from supervisor_app.config.serve import ServeConfig


def serve_other_modes(config: Config, serve_config: ServeConfig) -> int | None:
    engine_config = load_engine_config(config)
    if engine_config.command is None and engine_config.programs_file is None:
        return None
    from supervisor_app.serve.engine.command import serve_engine

    if engine_config.command is not None:
        return serve_engine(config, serve_config, engine_config)
    return None
