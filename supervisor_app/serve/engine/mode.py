"""Which serve mode the settings ask for: engine mode (SMC_ENGINE_COMMAND / LAUNCH_COMMAND, or a
programs file with an engine program), the handler server with sidecar programs, or None: the
handler server as it always was."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from supervisor_app import logs, process
from supervisor_app.config import Config
from supervisor_app.config.engine import EngineConfig, load_engine_config


@dataclass(frozen=True)
class Mode:
    engine_config: EngineConfig
    program: Any  # the programs file's engine program, if it names one
    sidecars: tuple[Any, ...]

    @property
    def engine(self) -> bool:
        return self.engine_config.command is not None or self.program is not None


def other_mode(config: Config) -> Mode | None:
    """None: the handler server as it always was."""
    engine_config = load_engine_config(config)
    if engine_config.command is None and engine_config.programs_file is None:
        return None
    program = None
    sidecars: tuple = ()
    if engine_config.programs_file is not None:
        from supervisor_app.programs.parse import load_programs
        from supervisor_app.supervision.sidecars import make_sidecar

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
    return Mode(engine_config, program, sidecars)
