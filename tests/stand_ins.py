"""Stand-ins for the vendor tools this machine cannot run (no NVIDIA GPU or driver, no AWS Neuron
device): shell scripts put on PATH that answer only the exact arguments smc sends, as the real
tool would, and otherwise exit 9 naming what they got, so a change in smc's query fails a test
instead of passing unseen. docs/ARCHITECTURE.md ("Stand-ins") lists them beside every other
stand-in the tests use."""

from __future__ import annotations

from pathlib import Path

# The queries smc sends (supervisor_app/worker/gpus.py and train/resources.py, as the toolkits do).
NVIDIA_SMI_SERVE_ARGS = "--query-gpu=index --format=csv,noheader,nounits"
NVIDIA_SMI_TRAIN_ARGS = "--list-gpus"
NEURON_LS_ARGS = "-j"
WRONG_ARGUMENTS_EXIT = 9


def tool_script(name: str, expected_args: str, body: str) -> str:
    return (
        "#!/bin/sh\n"
        f"# Stand-in for {name} (tests/stand_ins.py): it answers only `{name} {expected_args}`.\n"
        f'if [ "$*" != "{expected_args}" ]; then\n'
        f'    echo "stand-in {name}: unexpected arguments: $* (expected: {expected_args})" >&2\n'
        f"    exit {WRONG_ARGUMENTS_EXIT}\n"
        "fi\n"
        f"{body}\n"
    )


def write_tool(path: Path, expected_args: str, body: str) -> Path:
    """Write the stand-in `path.name` to path (executable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(tool_script(path.name, expected_args, body))
    path.chmod(0o755)
    return path


__all__ = ["NEURON_LS_ARGS", "NVIDIA_SMI_SERVE_ARGS", "NVIDIA_SMI_TRAIN_ARGS", "WRONG_ARGUMENTS_EXIT", "tool_script",
           "write_tool"]
