"""`smc python`: the embedded interpreter, with CPython's command line.

Supports -c CODE, -m MODULE, SCRIPT (file, directory or zip with __main__.py), - (stdin) and an
interactive prompt, with sys.argv, __main__ and sys.path[0] set as CPython sets them. Leading
-b -B -d -E -I -O -OO -P -q -s -S -u -v -W ARG -X OPT are accepted; some can only be acknowledged:
a frozen interpreter's optimisation level is fixed at build time (-O), and -S still applies smc's
site dirs, since without them pip-installed packages would be invisible.
"""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path

from supervisor_app import exitcodes, usersite
from supervisor_app.errors import UsageError

# Flags that take no argument and may be bundled, as in `-uB`.
_NOARG_FLAGS = set("bBdEIOPqsSuv")
_ARG_FLAGS = {"W", "X"}

PYTHON_USAGE = "usage: smc python [-BEIOPsSu] [-W arg] [-X opt] [-c cmd | -m mod | file | -] [arg] ..."


@dataclass
class PythonArgs:
    flags: set[str] = field(default_factory=set)
    warnings: list[str] = field(default_factory=list)
    xoptions: list[str] = field(default_factory=list)
    mode: str = "stdin"  # "command" | "module" | "script" | "stdin"
    target: str = ""
    argv: list[str] = field(default_factory=list)  # the user's args after the target
    show_version: bool = False


def looks_like_python(args: list[str]) -> bool:
    """Is this argv meant for an interpreter (e.g. sys.executable re-run by user code or pip)?"""
    if not args:
        return False
    first = args[0]
    if first.startswith("-") and len(first) > 1 and not first.startswith("--"):
        return first[1] in _NOARG_FLAGS | _ARG_FLAGS | {"c", "m", "V"}
    return first.endswith(".py") or os.path.isfile(first)


def parse(args: list[str]) -> PythonArgs:
    parsed = PythonArgs()
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("--version", "-V"):
            parsed.show_version = True
            return parsed
        if arg == "-" or not arg.startswith("-") or arg == "--":
            if arg == "--":
                i += 1
                if i >= len(args):
                    return parsed
                arg = args[i]
            parsed.mode, parsed.target = ("stdin", "-") if arg == "-" else ("script", arg)
            parsed.argv = args[i + 1 :]
            return parsed
        j = 1
        while j < len(arg):
            letter = arg[j]
            rest = arg[j + 1 :]
            if letter in ("c", "m"):
                value, i = _option_value(args, i, rest, f"-{letter}")
                parsed.mode = "command" if letter == "c" else "module"
                parsed.target = value
                parsed.argv = args[i + 1 :]
                return parsed
            if letter in _ARG_FLAGS:
                value, i = _option_value(args, i, rest, f"-{letter}")
                (parsed.warnings if letter == "W" else parsed.xoptions).append(value)
                break
            if letter in _NOARG_FLAGS:
                parsed.flags.add(letter)
                j += 1
                continue
            raise UsageError(f"smc python: unknown option -{letter}", hint=PYTHON_USAGE)
        i += 1
    return parsed


def _option_value(args: list[str], i: int, rest: str, option: str) -> tuple[str, int]:
    if rest:
        return rest, i
    if i + 1 >= len(args):
        raise UsageError(f"smc python: argument expected for the {option} option", hint=PYTHON_USAGE)
    return args[i + 1], i + 1


def run(args: list[str], prefix: Path, environ: dict[str, str] | os._Environ) -> int:
    """Run user Python in this process; returns the exit code CPython would give."""
    parsed = parse(args)
    if parsed.show_version:
        print(f"Python {sys.version.split()[0]}")
        return exitcodes.OK
    _apply_flags(parsed)
    usersite.prepare(
        prefix,
        environ,
        usersite.SiteOptions(
            ignore_environment="E" in parsed.flags,
            no_user_site="s" in parsed.flags,
            isolated="I" in parsed.flags,
        ),
    )
    safe_path = "I" in parsed.flags or "P" in parsed.flags or (
        "E" not in parsed.flags and bool(environ.get("PYTHONSAFEPATH"))
    )
    return _execute(parsed, safe_path)


def _apply_flags(parsed: PythonArgs) -> None:
    if "B" in parsed.flags:
        sys.dont_write_bytecode = True
    if "u" in parsed.flags:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.reconfigure(write_through=True, line_buffering=False)
            except (AttributeError, ValueError):
                pass
    for option in parsed.xoptions:
        key, _, value = option.partition("=")
        sys._xoptions[key] = value or True  # type: ignore[attr-defined]
    if parsed.warnings:
        import warnings

        for spec in parsed.warnings:
            warnings._setoption(spec)  # type: ignore[attr-defined]  # same parser as -W


def _execute(parsed: PythonArgs, safe_path: bool) -> int:
    import runpy

    try:
        if parsed.mode == "command":
            sys.argv = ["-c", *parsed.argv]
            _set_path0("", safe_path)
            _run_source(parsed.target, "<string>")
        elif parsed.mode == "module":
            sys.argv = ["-m", *parsed.argv]
            _set_path0(os.getcwd(), safe_path)
            runpy._run_module_as_main(parsed.target, alter_argv=True)  # type: ignore[attr-defined]
        elif parsed.mode == "script":
            script = parsed.target
            sys.argv = [script, *parsed.argv]
            if not os.path.exists(script):
                sys.stderr.write(
                    f"smc python: can't open file {os.path.abspath(script)!r}: "
                    "[Errno 2] No such file or directory\n"
                )
                return exitcodes.USAGE
            if os.path.isfile(script):
                _set_path0(os.path.dirname(os.path.realpath(script)), safe_path)
            runpy.run_path(script, run_name="__main__")
        else:
            sys.argv = ["-" if parsed.target == "-" else "", *parsed.argv]
            _set_path0("", safe_path)
            if sys.stdin.isatty() and parsed.target != "-":
                import code

                code.interact(banner=f"Python {sys.version} (smc)", exitmsg="")
            else:
                _run_source(sys.stdin.read(), "<stdin>")
    except SystemExit:
        raise
    except BaseException as exc:  # noqa: BLE001 - print as CPython does, then exit 1
        _print_user_traceback(exc)
        return exitcodes.FAILURE
    return exitcodes.OK


def _set_path0(entry: str, safe_path: bool) -> None:
    if not safe_path:
        sys.path.insert(0, entry)


def _run_source(source: str, filename: str) -> None:
    main = types.ModuleType("__main__")
    main.__dict__["__builtins__"] = __builtins__
    sys.modules["__main__"] = main
    exec(compile(source, filename, "exec"), main.__dict__)


def _print_user_traceback(exc: BaseException) -> None:
    """The traceback CPython would print: smc's and runpy's own frames are left out."""
    import traceback

    tb = exc.__traceback__
    while tb is not None and _is_internal(tb.tb_frame.f_globals.get("__name__", "")):
        tb = tb.tb_next
    traceback.print_exception(type(exc), exc, tb)


def _is_internal(module: str) -> bool:
    return module == "runpy" or module.startswith("supervisor_app")
