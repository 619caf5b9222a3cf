"""Entry point: dispatch on argv. The only module that reads os.environ.

Heavy modules (flask, gunicorn, the train runner) are imported only by the command that needs
them, so `smc version` and `smc python` start fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, MutableMapping, Sequence

from supervisor_app import __version__, exitcodes
from supervisor_app.errors import SmcError, UsageError

# name -> (module with run(config, args) -> int, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("supervisor_app.train.command", "run the SageMaker training job in /opt/ml (docker run IMAGE train)"),
    "serve": ("supervisor_app.serve.command", "serve /opt/ml/model over HTTP on port 8080 (docker run IMAGE serve)"),
    "doctor": ("supervisor_app.doctor.command", "check this container's layout and configuration; --json for machines"),
    "python": ("supervisor_app.pyrun", "run Python with the embedded interpreter: -c CODE | -m MODULE | SCRIPT"),
    "version": ("", "print smc's version and build details"),
}


def usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = [
        "usage: smc <command> [args]",
        "",
        "smc makes any Docker image a SageMaker container: ENTRYPOINT [\"smc\"].",
        "",
        "commands:",
    ]
    lines += [f"  {name:<{width}}  {helptext}" for name, (_, helptext) in COMMANDS.items()]
    lines += [
        "",
        "options:",
        "  -h, --help     show this help",
        "  --version      print the version",
        "",
        "Environment variables and their defaults are listed in docs/environment.md.",
    ]
    return "\n".join(lines)


def version_details() -> str:
    from supervisor_app.process import is_frozen

    build = "frozen" if is_frozen() else "source"
    return f"smc {__version__} (Python {sys.version.split()[0]}, {build}, {sys.platform})"


def main(argv: Sequence[str] | None = None) -> None:
    sys.exit(run(list(sys.argv[1:] if argv is None else argv), os.environ))


def run(args: list[str], environ: MutableMapping[str, str]) -> int:
    _freeze_support()
    if not args:
        sys.stderr.write(usage() + "\n")
        return exitcodes.USAGE
    first = args[0]
    if first in ("-h", "--help", "help"):
        sys.stdout.write(usage() + "\n")
        return exitcodes.OK
    if first == "--version":
        sys.stdout.write(f"smc {__version__}\n")
        return exitcodes.OK
    if first == "version":
        sys.stdout.write(version_details() + "\n")
        return exitcodes.OK
    from supervisor_app import tls

    # Before anything can open a TLS connection, and before load_config copies the environment.
    tls.use_distribution_ca_bundle(environ)
    if first not in COMMANDS:
        from supervisor_app import pyrun

        # sys.executable is smc: user code, multiprocessing and pip re-run it as `python ...`.
        if pyrun.looks_like_python(args):
            return _run_python(args, environ)
        sys.stderr.write(f"smc: unknown command {first!r}\n\n{usage()}\n")
        return exitcodes.USAGE
    if first == "python":
        return _run_python(args[1:], environ)
    return _run_command(first, args[1:], environ)


def _run_python(args: list[str], environ: Mapping[str, str]) -> int:
    from supervisor_app import pyrun
    from supervisor_app.config import load_config

    try:
        config = load_config(environ)
        return pyrun.run(args, config.prefix, environ)
    except SmcError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code


def _run_command(name: str, args: list[str], environ: Mapping[str, str]) -> int:
    from supervisor_app import logs, process
    from supervisor_app.config import load_config

    try:
        config = load_config(environ)
    except SmcError as exc:
        sys.stderr.write(exc.render() + "\n")
        return exc.exit_code
    logs.configure(config.log_level, config.log_format)
    log = logs.get_logger(name)
    if name in ("train", "serve"):
        process.stop_on_signals()
        process.stop_with_bootloader()  # a kill -9 of the onefile bootloader stops smc too
    try:
        if name in ("train", "serve"):
            from supervisor_app import rootfs

            rootfs.require_proc()  # a chroot without /proc: say so now, not as a failure far from it
        module = importlib.import_module(COMMANDS[name][0])
        return int(module.run(config, args))
    except UsageError as exc:
        sys.stderr.write(f"{exc.render()}\n")
        return exc.exit_code
    except SmcError as exc:
        log.error("command_failed", error=exc.message, hint=exc.hint or None, exit_code=exc.exit_code)
        return exc.exit_code
    except process.StopRequested as stop:
        code = exitcodes.from_signal(stop.signum)
        log.info("stopped_by_signal", signal=process.signal_name(stop.signum), exit_code=code,
                 why="outside a supervision loop (start-up, pip, a DNS wait) a stop ends smc at once")
        return code
    except KeyboardInterrupt:
        return exitcodes.from_signal(2)
    except Exception:  # noqa: BLE001 - a bug in smc: say so with the traceback, never a bare crash
        log.exception("internal_error", hint="this is a bug in smc; please report it with this traceback")
        return exitcodes.FAILURE
    finally:
        if name in ("train", "serve"):
            process.remove_orphaned_bundle()


def _freeze_support() -> None:
    # PyInstaller's multiprocessing hook runs only when multiprocessing is bundled; its
    # freeze_support diverts worker/resource-tracker/forkserver children of user code.
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None:
        multiprocessing.freeze_support()
