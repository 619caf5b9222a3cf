"""What engine mode will run, decided before anything starts (pure, apart from looking the
command's program up on PATH): the engine's argv, its address, and the checks that make bad input
fail with a clear cause instead of a restart loop."""

from __future__ import annotations

import os
import shlex
import shutil
from dataclasses import dataclass

from supervisor_app import exitcodes
from supervisor_app.config.engine import EngineConfig
from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import ConfigError, SmcError

# First words /bin/sh runs itself: nothing to look up on PATH.
_SHELL_WORDS = frozenset({
    "exec", "cd", ".", "source", "set", "export", "if", "for", "while", "until", "case", "{", "(", "!",
    "eval", "ulimit", "umask", "trap", "env", "nice", "nohup", "time", "test", "[", "true", "false", "echo",
})


class EngineNotFound(SmcError):
    exit_code = exitcodes.NOT_FOUND


class EngineNotExecutable(SmcError):
    exit_code = exitcodes.NOT_EXECUTABLE


@dataclass(frozen=True)
class EnginePlan:
    name: str  # the engine's name in logs: "engine" or its [program:NAME]
    command: str
    argv: tuple[str, ...]
    host: str
    port: int
    health_path: str
    invocations_path: str
    max_restarts: int
    stop_signal: int
    health_interval_s: float
    health_failures: int
    directory: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    adapters: str = "passthrough"  # SMC_ENGINE_ADAPTERS


def plan_engine(serve: ServeConfig, engine: EngineConfig, command: str, path_env: str,
                name: str = "engine", directory: str | None = None,
                environment: tuple[tuple[str, str], ...] = ()) -> EnginePlan:
    if engine.port == serve.port and engine.host in ("127.0.0.1", "localhost", "0.0.0.0", "::1", "::"):
        raise ConfigError(
            f"SMC_ENGINE_URL={engine.url} uses port {serve.port}, the port smc's nginx serves SageMaker on",
            hint="start the engine on another port (e.g. 8000) and set SMC_ENGINE_URL=http://127.0.0.1:8000",
        )
    check_command(command, path_env, directory)
    if engine.args:
        # One shell word per argv element: a value with spaces stays one element.
        command = command.rstrip() + " " + " ".join(shlex.quote(arg) for arg in engine.args)
    return EnginePlan(
        name=name, command=command, argv=shell_argv(command), host=engine.host, port=engine.port,
        health_path=engine.health_path, invocations_path=engine.invocations_path,
        max_restarts=engine.max_restarts, stop_signal=engine.stop_signal,
        health_interval_s=engine.health_interval_s, health_failures=engine.health_failures,
        directory=directory, environment=environment, adapters=engine.adapters,
    )


def shell_argv(command: str) -> tuple[str, ...]:
    """/bin/sh -c, with `exec` for a simple command so the engine itself is smc's child and gets
    the stop signal first-hand (a shell in between would die on SIGTERM and cut the engine's own
    graceful stop short). Compound commands run as given; their whole group gets the signals."""
    simple = not any(c in command for c in ";&|<>()`\n") and not command.lstrip().startswith("exec ")
    first = command.split(None, 1)[0] if command.split() else ""
    if simple and "=" not in first and first not in _SHELL_WORDS:
        return ("/bin/sh", "-c", "exec " + command)
    return ("/bin/sh", "-c", command)


def program_of(command: str) -> str | None:
    """The program a shell command runs first, or None when only the shell can tell."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for word in words:
        if "=" in word.split("/")[0] and not word.startswith("="):
            continue  # VAR=value prefix
        return None if word in _SHELL_WORDS else word
    return None


def check_command(command: str, path_env: str, directory: str | None = None) -> str | None:
    """The resolved program path; raises EngineNotFound / EngineNotExecutable (exit 127 / 126)."""
    program = program_of(command)
    if program is None:
        return None
    if "/" in program:
        path = program if os.path.isabs(program) or not directory else os.path.join(directory, program)
        if not os.path.exists(path):
            raise EngineNotFound(f"engine command not found: {program} (from {command!r})",
                                 hint="install it in the image or fix SMC_ENGINE_COMMAND")
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            raise EngineNotExecutable(f"engine command is not executable: {program}",
                                      hint=f"chmod +x {program}, or run it through its interpreter")
        return path
    found = shutil.which(program, path=path_env)
    if not found:
        raise EngineNotFound(
            f"engine command not found: {program!r} is not on PATH (from {command!r})",
            hint="install the engine in the image, or give its full path in SMC_ENGINE_COMMAND",
        )
    return found


__all__ = ["EngineNotExecutable", "EngineNotFound", "EnginePlan", "check_command", "plan_engine", "program_of"]
