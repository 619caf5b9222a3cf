"""Checks of engine mode and programs files: what `smc serve` would refuse or trip over."""

from __future__ import annotations

import os
import re
import shlex

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


def engine_command(config: Config) -> str:
    """The engine's command as configured ("" when a programs file names it: not read again here)."""
    try:
        return load_engine_config(config).command or ""
    except SmcError:
        return ""


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
    routed = ("the OpenAI route its JSON body names (auto: messages, prompt, input; or route= in "
              "X-Amzn-SageMaker-Custom-Attributes)" if engine.auto_route else engine.invocations_path)
    findings.append(ok("engine_url", f"the engine is expected at {engine.url}; /ping follows GET "
                                     f"{engine.health_path}, /invocations goes to {routed}"))
    findings += _check_adapters(config, engine, command)
    if engine.args_from is not None:
        flags = " ".join(shlex.quote(a) for a in engine.args)
        findings.append(ok("engine_args", f"{engine.args_from}* variables add {len(engine.args)} argv element(s) "
                                          f"to the engine command: {flags or '(none set)'}")
                        if engine.args else
                        warn("engine_args", f"SMC_ENGINE_ARGS_FROM={engine.args_from} but no variable starting "
                                            f"with {engine.args_from} is set (or all are `false`)",
                             f"set e.g. {engine.args_from}MAX_MODEL_LEN=4096, or unset SMC_ENGINE_ARGS_FROM"))
    if serve is not None:
        from supervisor_app.serve.engine.plan import plan_engine

        try:
            plan_engine(serve, engine, command, serve.path_env)
        except SmcError as exc:
            check = "engine_command" if "command" in exc.message else "engine_port"
            findings.append(fail(check, exc.message, exc.hint))
            return findings
        script = _missing_script(command, None)
        if script is not None:
            findings.append(fail("engine_command", f"engine command {command!r} runs {script}, which does not exist "
                                                   f"(from {os.getcwd()})",
                                 "fix the script's path in SMC_ENGINE_COMMAND (or the program's command=); serve "
                                 "would start the interpreter and give up after its restarts"))
            return findings
        findings.append(ok("engine_command", f"engine command {command!r} can be started"))
    return findings


_INTERPRETERS = re.compile(r"^(python[0-9.]*|node|bash|sh|ruby|perl|Rscript)$")


def _missing_script(command: str, directory: str | None) -> str | None:
    """The script file an interpreter in `command` is asked to run, when it does not exist: an
    engine command's most common typo. None when there is no such file argument or it exists
    (`python -m module`, `python -c ...` and compound shell commands are not looked into)."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    while words and "=" in words[0].split("/")[0]:
        words = words[1:]  # VAR=value prefixes
    if words and words[0] == "exec":
        words = words[1:]
    if len(words) >= 2 and os.path.basename(words[0]) == "smc" and words[1] == "python":
        words = words[1:]
    if not words or not _INTERPRETERS.match(os.path.basename(words[0])) or any(c in command for c in ";&|<>()`"):
        return None
    for word in words[1:]:
        if word in ("-m", "-c", "-e", "--eval"):
            return None  # a module or inline code, not a file
        if word.startswith("-"):
            continue
        path = word if os.path.isabs(word) or not directory else os.path.join(directory, word)
        return None if os.path.exists(path) else word
    return None


_LORA_FLAGS = {"vllm": ("--enable-lora",), "sglang": ("--enable-lora", "--lora-paths")}


def _check_adapters(config: Config, engine: EngineConfig, command: str) -> list[Finding]:
    """SMC_ENGINE_ADAPTERS=vllm|sglang needs the engine's LoRA routes. Serve asks the engine at
    start (engine_adapter_routes_missing); here, what the command line already shows."""
    mode = engine.adapters
    if mode == "passthrough":
        return []
    from supervisor_app.serve.engine.adapters import DIALECTS

    dialect = DIALECTS[mode]
    routes = f"POST {dialect.load_path} and {dialect.unload_path}"
    words = command + " " + " ".join(engine.args)
    missing: list[str] = []
    if mode in words.lower():  # only an engine the command names can be judged by its flags
        if not any(flag in words for flag in _LORA_FLAGS[mode]):
            missing.append(f"{' or '.join(_LORA_FLAGS[mode])} on the engine's command line")
        if mode == "vllm" and config.environ.get("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "").lower() not in ("true", "1"):
            missing.append("VLLM_ALLOW_RUNTIME_LORA_UPDATING=true (vLLM serves the load/unload routes only then)")
    if missing:
        return [warn("engine_adapters", f"SMC_ENGINE_ADAPTERS={mode} needs the engine's {routes}, and the engine "
                                        f"command lacks {'; '.join(missing)}",
                     "add them, or set SMC_ENGINE_ADAPTERS=passthrough if the engine serves /adapters itself")]
    return [ok("engine_adapters", f"SMC_ENGINE_ADAPTERS={mode}: smc answers /adapters with the engine's {routes} "
                                  "(serve checks that the engine has them when it starts)")]


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
