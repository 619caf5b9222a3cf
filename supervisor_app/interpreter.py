"""Which Python runs user code: one rule for `smc train`, `smc serve` and `smc doctor`.

1. SMC_PYTHON=embedded: smc's own interpreter.
2. SMC_PYTHON=PATH-or-command: that one (a missing one is a config error, never a silent fallback).
3. SMC_PREFIX holds packages (installed with `smc python -m pip`, for the embedded 3.11 only): the
   embedded interpreter, so an image built that way keeps working when it also has a python3.
4. python3 on PATH: the image's own, with the frameworks it was built with.
5. Otherwise the embedded interpreter (an image with no Python at all).

choose() plans from files and the environment only; probe() starts the chosen interpreter once to
learn its version (serve and doctor need at least MIN_VERSION to run smc's worker code in it).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from supervisor_app import process, usersite
from supervisor_app.errors import BootError, ConfigError

EMBEDDED = "embedded"
MIN_VERSION = (3, 9)  # the oldest CPython smc's worker side (supervisor_app/worker) imports on
PROBE_TIMEOUT_S = 20.0
# Only what Python 2.7 and 3.x both run, so an old interpreter gets the version message, not a syntax error.
_PROBE = ("import sys, json, sysconfig\n"
          "try:\n    import importlib.util as u; pip = u.find_spec('pip') is not None\n"
          "except Exception:\n    pip = False\n"
          "print(json.dumps({'version': list(sys.version_info[:3]), 'implementation': sys.implementation.name "
          "if hasattr(sys, 'implementation') else 'cpython', 'executable': sys.executable, "
          "'purelib': sysconfig.get_paths()['purelib'], 'pip': pip}))")


@dataclass(frozen=True)
class Interpreter:
    argv: tuple[str, ...]  # how to start it: (python3,) or smc's own (binary, "python")
    embedded: bool
    reason: str  # why this one, in words, for logs and doctor

    @property
    def name(self) -> str:
        return "smc's embedded Python" if self.embedded else self.argv[0]


@dataclass(frozen=True)
class Probe:
    version: tuple[int, int, int]
    implementation: str
    executable: str
    purelib: str = ""  # its site-packages: where its pip installs
    has_pip: bool = True

    @property
    def version_text(self) -> str:
        return ".".join(map(str, self.version))


def embedded(reason: str) -> Interpreter:
    return Interpreter((*process.self_command(), "python"), embedded=True, reason=reason)


def prefix_packages(prefix: Path) -> list[str]:
    """Distributions installed into SMC_PREFIX for the embedded interpreter (names, sorted)."""
    site = usersite.site_packages(prefix)  # the frozen side's version: the embedded one
    try:
        entries = sorted(os.listdir(site))
    except OSError:
        return []
    return [e.split("-")[0] for e in entries if e.endswith((".dist-info", ".egg-info"))]


def choose(choice: str, path_env: str | None, prefix: Path) -> Interpreter:
    if choice == EMBEDDED:
        return embedded("SMC_PYTHON=embedded")
    if choice:
        found = shutil.which(choice, path=path_env)
        if found is None:
            raise ConfigError(
                f"SMC_PYTHON={choice!r} is not an executable file or a command on PATH",
                hint="set SMC_PYTHON to the image's interpreter (e.g. /usr/bin/python3), or to 'embedded'",
            )
        return Interpreter((found,), embedded=False, reason=f"SMC_PYTHON={choice}")
    installed = prefix_packages(prefix)
    if installed:
        return embedded(f"SMC_PREFIX={prefix} holds packages installed with `smc python -m pip` "
                        f"({', '.join(installed[:5])}{', ...' if len(installed) > 5 else ''})")
    found = shutil.which("python3", path=path_env)
    if found is not None:
        return Interpreter((found,), embedded=False, reason="python3 on PATH")
    return embedded("no python3 on PATH")


def probe(interpreter: Interpreter, environ: Mapping[str, str]) -> Probe:
    """Start the image's interpreter once: its version, or a BootError saying why it cannot run."""
    if interpreter.embedded:
        return Probe(tuple(sys.version_info[:3]), sys.implementation.name, interpreter.argv[0])  # type: ignore[arg-type]
    fix = "set SMC_PYTHON to a working interpreter (3.9 or newer), or SMC_PYTHON=embedded for smc's own"
    try:
        done = subprocess.run([*interpreter.argv, "-c", _PROBE], env=process.foreign_env(environ),
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=PROBE_TIMEOUT_S, check=False)
    except OSError as exc:
        raise BootError(f"{interpreter.argv[0]} ({interpreter.reason}) cannot be started: {exc.strerror}",
                        hint=fix) from None
    except subprocess.TimeoutExpired:
        raise BootError(f"{interpreter.argv[0]} ({interpreter.reason}) did not answer within {PROBE_TIMEOUT_S:g} s",
                        hint=fix) from None
    try:
        answer = json.loads(done.stdout.decode(errors="replace").strip().splitlines()[-1])
        version = tuple(int(part) for part in answer["version"])
    except (ValueError, IndexError, KeyError, TypeError):
        answer = None
    if done.returncode != 0 or answer is None:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise BootError(
            f"{interpreter.argv[0]} ({interpreter.reason}) fails to start: "
            f"{process.describe_exit(done.returncode)}{': ' + ' | '.join(tail) if tail else ''}", hint=fix)
    return Probe(version, str(answer["implementation"]), str(answer["executable"]),  # type: ignore[arg-type]
                 str(answer["purelib"]), bool(answer["pip"]))


def require_worker_version(interpreter: Interpreter, found: Probe) -> None:
    """smc's worker code runs inside the interpreter that serves: it needs MIN_VERSION."""
    if found.version[:2] < MIN_VERSION:
        raise BootError(
            f"{interpreter.argv[0]} ({interpreter.reason}) is Python {found.version_text}; smc serve runs "
            f"its workers in it and needs Python {'.'.join(map(str, MIN_VERSION))} or newer",
            hint="set SMC_PYTHON=embedded to serve with smc's own Python 3.11 (install your packages with "
            "`smc python -m pip`), or SMC_PYTHON to a newer interpreter in the image",
        )


__all__ = ["EMBEDDED", "MIN_VERSION", "Interpreter", "Probe", "choose", "embedded", "prefix_packages", "probe",
           "require_worker_version"]
