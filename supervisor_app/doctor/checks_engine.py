"""Checks of engine mode and programs files: what `smc serve` would refuse or trip over."""

from __future__ import annotations

from supervisor_app.config import Config
from supervisor_app.config.engine import EngineConfig, load_engine_config
from supervisor_app.config.serve import ServeConfig
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.errors import SmcError


def engine_mode(config: Config) -> bool:
    """The settings ask for engine mode (then serve needs no handler module)."""
    try:
        engine = load_engine_config(config)
    except SmcError:
        return False
    if engine.command:
        return True
    if not engine.programs_file:
        return False
    from supervisor_app.programs.parse import load_programs

    try:
        return load_programs(engine.programs_file, config.environ).engine is not None
    except SmcError:
        return False


def check_engine(config: Config, serve: ServeConfig | None) -> list[Finding]:
    try:
        engine = load_engine_config(config)
    except SmcError as exc:
        return [fail("engine_config", exc.message, exc.hint)]
    findings: list[Finding] = []
    program_command = None
    if engine.programs_file:
        program_findings, program_command = _check_programs(config, engine)
        findings += program_findings
    command = program_command or engine.command
    if command is None:
        return findings
    findings.append(ok("engine_url", f"the engine is expected at {engine.url}; /ping follows GET "
                                     f"{engine.health_path}, /invocations goes to {engine.invocations_path}"))
    if serve is not None:
        from supervisor_app.serve.engine.plan import plan_engine

        try:
            plan_engine(serve, engine, command, serve.path_env)
        except SmcError as exc:
            check = "engine_command" if "command" in exc.message else "engine_port"
            findings.append(fail(check, exc.message, exc.hint))
            return findings
        findings.append(ok("engine_command", f"engine command {command!r} can be started"))
    return findings


def _check_programs(config: Config, engine: EngineConfig) -> tuple[list[Finding], str | None]:
    from supervisor_app.programs.parse import load_programs

    path = engine.programs_file or ""
    try:
        programs = load_programs(path, config.environ)
    except SmcError as exc:
        return [fail("programs_file", exc.message, exc.hint, path)], None
    findings = [warn("programs_file", message, "remove the key or section; smc does not act on it", path)
                for message in programs.warnings]
    names = ", ".join(p.name for p in programs.sidecars) or "none"
    engine_program = programs.engine
    findings.append(ok("programs_file", f"{len(programs.programs)} program(s): sidecars {names}; engine "
                                        f"{engine_program.name if engine_program else 'none'}", path))
    return findings, engine_program.command if engine_program else None


__all__ = ["check_engine", "engine_mode"]
