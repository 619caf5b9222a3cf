"""Read a supervisord program file with the `supervisor` package's own config code, into frozen
ProgramSpecs smc runs itself (supervisord is not started).

`supervisor.options.ServerOptions.processes_from_section` parses each [program:NAME] section
exactly as supervisord would (expansions such as %(ENV_X)s and %(here)s, numprocs, exitcodes,
signal names, byte sizes), so files people already have keep working. The package is imported
only here, and this module only when a programs file is given.

smc-specific keys (supervisord ignores unknown keys, so the file still works there):
  smc_engine = true    this program is the engine (as is a program named `engine`)
  smc_required = true  the program giving up (FATAL) ends smc with exit 1
"""

from __future__ import annotations

import configparser
import os
import pwd
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor_app.errors import ConfigError

ENGINE_NAME = "engine"
SUPPORTED_KEYS = frozenset({
    "command", "directory", "environment", "autostart", "autorestart", "exitcodes", "startsecs",
    "startretries", "stopsignal", "stopwaitsecs", "stopasgroup", "killasgroup", "priority", "user",
    "umask", "numprocs", "numprocs_start", "process_name", "smc_engine", "smc_required",
})
# Output keys: smc relays every program's stdout and stderr as JSON lines on its own output, which
# is what these settings ask for in a container (stdout_logfile=/dev/stdout, maxbytes=0).
RELAYED_KEYS = frozenset({
    "redirect_stderr", "stdout_logfile", "stderr_logfile", "stdout_logfile_maxbytes", "stderr_logfile_maxbytes",
    "stdout_logfile_backups", "stderr_logfile_backups", "stdout_capture_maxbytes", "stderr_capture_maxbytes",
    "stdout_events_enabled", "stderr_events_enabled", "stdout_syslog", "stderr_syslog",
})
_CONTAINER_LOGS = ("/dev/stdout", "/dev/stderr", "/dev/fd/1", "/dev/fd/2", "/proc/self/fd/1", "/proc/self/fd/2",
                   "none", "")
# Sections that configure supervisord itself: smc is the supervisor, they have no meaning here.
_SERVER_SECTIONS = ("supervisord", "unix_http_server", "inet_http_server", "supervisorctl", "rpcinterface:")


@dataclass(frozen=True)
class ProgramSpec:
    name: str
    command: str
    directory: str | None
    environment: tuple[tuple[str, str], ...]
    autostart: bool
    autorestart: str  # "true" | "false" | "unexpected"
    exitcodes: tuple[int, ...]
    startsecs: int
    startretries: int
    stopsignal: int
    stopwaitsecs: int
    stopasgroup: bool
    priority: int
    uid: int | None
    umask: int | None
    is_engine: bool
    required: bool
    source: str  # "file:line" of its section, for messages


@dataclass(frozen=True)
class Programs:
    path: str
    programs: tuple[ProgramSpec, ...]  # sidecars and the engine, by priority
    warnings: tuple[str, ...]

    @property
    def engine(self) -> ProgramSpec | None:
        return next((p for p in self.programs if p.is_engine), None)

    @property
    def sidecars(self) -> tuple[ProgramSpec, ...]:
        return tuple(p for p in self.programs if not p.is_engine)


def _section_lines(text: str) -> dict[str, int]:
    lines: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        match = re.match(r"\s*\[([^\]]+)\]", line)
        if match:
            lines.setdefault(match.group(1).strip(), number)
    return lines


def load_programs(path: str, environ: Mapping[str, str]) -> Programs:
    # Imported here only: a programs file is optional and the package costs start-up time.
    from supervisor.datatypes import RestartUnconditionally, RestartWhenExitUnexpected, boolean
    from supervisor.options import ServerOptions, UnhosedConfigParser

    file = Path(path)
    hint = "fix the file named in SMC_PROGRAMS (supervisord's [program:NAME] format), or unset SMC_PROGRAMS"
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"SMC_PROGRAMS={path}: cannot read the file ({exc.strerror})", hint=hint) from None
    parser = UnhosedConfigParser()
    options = ServerOptions()
    options.environ_expansions = {f"ENV_{k}": v for k, v in environ.items()}
    options.here = str(file.resolve().parent)
    options.configfile = str(file)
    parser.expansions = options.environ_expansions
    try:
        parser.read_string(text, source=str(file))
    except configparser.Error as exc:
        raise ConfigError(f"SMC_PROGRAMS={path}: {_describe_parse_error(exc)}", hint=hint) from None
    lines = _section_lines(text)
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("[") and not re.match(r"\s*\[[^\]]+\]", line):
            # configparser would take it for an option line and drop the section silently
            raise ConfigError(f"SMC_PROGRAMS={path}: line {number}: section header without its closing "
                              f"bracket: {line.strip()!r}", hint=hint)
    warnings: list[str] = []
    programs: list[ProgramSpec] = []
    ignored_sections = []
    for section in parser.sections():
        where = f"{path}:{lines.get(section, 0)}"
        if not section.startswith("program:"):
            if section.startswith(_SERVER_SECTIONS):
                continue
            ignored_sections.append(f"[{section}] ({where})")
            continue
        keys = set(parser.options(section))
        unknown = sorted(keys - SUPPORTED_KEYS - RELAYED_KEYS)
        if unknown:
            warnings.append(f"[{section}] ({where}): not supported by smc, ignored: {', '.join(unknown)}")
        for key in ("stdout_logfile", "stderr_logfile"):
            value = parser.get(section, key, raw=True, fallback="").strip()
            if value and value.lower() not in _CONTAINER_LOGS:
                warnings.append(f"[{section}] ({where}): {key}={value} ignored: smc relays the program's "
                                "output as JSON lines on its own stdout/stderr")
        try:
            configs = options.processes_from_section(parser, section, section.split(":", 1)[1])
            smc_engine = boolean(parser.saneget(section, "smc_engine", "false"))
            required = boolean(parser.saneget(section, "smc_required", "false"))
        except (ValueError, KeyError) as exc:
            message = str(exc).split(" in section ")[0]
            raise ConfigError(f"SMC_PROGRAMS={path}, [{section}] at line {lines.get(section, 0)}: {message}",
                              hint=hint) from None
        name = section.split(":", 1)[1]
        for cfg in configs:
            restart = cfg.autorestart
            autorestart = "true" if restart is RestartUnconditionally else \
                "unexpected" if restart is RestartWhenExitUnexpected else "false"
            env = dict(cfg.environment or {})
            programs.append(ProgramSpec(
                name=cfg.name, command=cfg.command, directory=cfg.directory,
                environment=tuple(env.items()), autostart=cfg.autostart, autorestart=autorestart,
                exitcodes=tuple(cfg.exitcodes), startsecs=cfg.startsecs, startretries=cfg.startretries,
                stopsignal=int(cfg.stopsignal), stopwaitsecs=cfg.stopwaitsecs, stopasgroup=cfg.stopasgroup,
                priority=cfg.priority, uid=cfg.uid, umask=cfg.umask,
                is_engine=smc_engine or name == ENGINE_NAME, required=required, source=where,
            ))
    if ignored_sections:
        warnings.append(f"sections smc does not run, ignored: {', '.join(ignored_sections)}")
    engines = [p for p in programs if p.is_engine]
    if len(engines) > 1:
        raise ConfigError(f"SMC_PROGRAMS={path}: more than one engine program: "
                          f"{', '.join(f'[program:{p.name}] ({p.source})' for p in engines)}",
                          hint="mark exactly one program as the engine ([program:engine] or smc_engine=true)")
    if not programs:
        warnings.append(f"{path} has no [program:NAME] section: nothing to run")
    programs.sort(key=lambda p: p.priority)
    return Programs(str(file), tuple(programs), tuple(warnings))


def _describe_parse_error(exc: configparser.Error) -> str:
    if isinstance(exc, configparser.MissingSectionHeaderError):
        return f"line {exc.lineno}: text before the first [section] header: {exc.line.strip()!r}"
    if isinstance(exc, configparser.ParsingError):
        errors = "; ".join(f"line {lineno}: {line.replace(chr(92) + 'n', '')}" for lineno, line in exc.errors)
        return f"not an ini file: {errors}"
    if isinstance(exc, (configparser.DuplicateSectionError, configparser.DuplicateOptionError)):
        return f"line {exc.lineno}: {exc.message.split(': ', 1)[-1] if hasattr(exc, 'message') else exc}"
    return str(exc)


def user_popen_kwargs(spec: ProgramSpec) -> dict[str, object]:
    """Popen arguments for `user` and `umask`: the user's uid, primary gid and groups."""
    kwargs: dict[str, object] = {}
    if spec.uid is not None and os.geteuid() == 0 and spec.uid != 0:
        entry = pwd.getpwuid(spec.uid)
        kwargs.update(user=spec.uid, group=entry.pw_gid, extra_groups=[])
    if spec.umask is not None:
        kwargs["umask"] = spec.umask
    if spec.directory:
        kwargs["cwd"] = spec.directory
    return kwargs


__all__ = ["ENGINE_NAME", "ProgramSpec", "Programs", "load_programs", "user_popen_kwargs"]
