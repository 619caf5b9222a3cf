"""Engine flags from the environment, as AWS's vLLM and SGLang images make them (pure).

`SMC_ENGINE_ARGS_FROM=SM_VLLM_` reads every variable that starts with the prefix, in sorted name
order so the same environment always gives the same argv: the rest of the name lowercased with `_`
as `-` is the flag; `true` (any case) is the bare flag, `false` drops it, an empty value is the
bare flag too (the upstream script drops empty values), anything else is the flag's one value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from supervisor_app.errors import ConfigError

_PREFIX = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_]*")
# smc's and SageMaker's own variables would turn into flags the engine does not know.
_RESERVED = ("SMC_", "SAGEMAKER_", "SM_")


def parse_args_prefix(name: str, raw: str) -> str:
    text = raw.strip()
    if not _PREFIX.fullmatch(text):
        raise ConfigError(f"{name}={raw!r} is not an environment variable prefix",
                          hint=f"set {name} to upper-case letters, digits and underscores ending in `_`, "
                               f"e.g. {name}=SM_VLLM_ or {name}=SM_SGLANG_")
    clash = next((r for r in _RESERVED if r.startswith(text) or text == r), None)
    if clash is not None:
        raise ConfigError(f"{name}={raw!r} would also read the {clash}* variables smc or SageMaker set",
                          hint=f"use the engine's own prefix, e.g. {name}=SM_VLLM_ or {name}=SM_SGLANG_")
    return text


def flags_from_env(prefix: str, environ: Mapping[str, str]) -> tuple[str, ...]:
    """The argv elements the prefixed variables make, in sorted variable-name order."""
    argv: list[str] = []
    for var in sorted(k for k in environ if k.startswith(prefix)):
        rest = var[len(prefix):]
        if not _NAME.fullmatch(rest):
            raise ConfigError(f"{var} does not name an engine flag after the prefix {prefix}",
                              hint=f"name it {prefix}FLAG_NAME (letters, digits, `_`), e.g. {prefix}MAX_MODEL_LEN=4096, "
                                   "or unset it")
        flag = "--" + rest.lower().replace("_", "-")
        value = environ[var]
        if value.strip().lower() == "false":
            continue
        argv.append(flag)
        if value.strip() and value.strip().lower() != "true":
            argv.append(value)
    return tuple(argv)


__all__ = ["flags_from_env", "parse_args_prefix"]
