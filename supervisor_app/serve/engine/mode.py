"""Which serve mode the settings ask for: engine mode (SMC_ENGINE_COMMAND / LAUNCH_COMMAND, or a
programs file with an engine program), the handler server with sidecar programs, or None: the
handler server as it always was."""

from __future__ import annotations

from supervisor_app import logs, process
from supervisor_app.config import Config
from supervisor_app.config.engine import load_engine_config
from supervisor_app.config.serve import ServeConfig


def serve_other_modes(config: Config, serve_config: ServeConfig) -> int | None:
    engine_config = load_engine_config(config)
    if engine_config.command is None and engine_config.programs_file is None:
        return None
    program = None
    sidecars: tuple = ()
    if engine_config.programs_file is not None:
        from supervisor_app.programs.parse import load_programs
        from supervisor_app.programs.sidecars import make_sidecar

        log = logs.get_logger("serve")
        programs = load_programs(engine_config.programs_file, config.environ)
        for warning in programs.warnings:
            log.warning("programs_file_warning", file=programs.path, message=warning)
        env = process.foreign_env(config.environ)
        sidecars = tuple(make_sidecar(spec, env, log) for spec in programs.sidecars)
        program = programs.engine
        log.info("programs_loaded", file=programs.path, sidecars=[s.name for s in programs.sidecars],
                 engine=program.name if program else None)
        if program is not None and engine_config.command is not None:
            log.warning("engine_command_replaced", program=program.name, ignored=engine_config.command,
                        why=f"{programs.path} names an engine program; it replaces SMC_ENGINE_COMMAND")
    if engine_config.command is None and program is None:
        from supervisor_app.serve.command import serve

        return serve(config, serve_config, sidecars)
    from supervisor_app.serve.engine.command import serve_engine

    return serve_engine(config, serve_config, engine_config, program, sidecars)
