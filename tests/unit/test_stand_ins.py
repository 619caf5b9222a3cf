"""The stand-in vendor tools answer only the query smc sends, and docs name every stand-in."""

from __future__ import annotations

import subprocess

from tests import stand_ins
from tests.conftest import ROOT


def test_a_stand_in_refuses_arguments_smc_does_not_send(tmp_path):
    tool = stand_ins.write_tool(tmp_path / "nvidia-smi", stand_ins.NVIDIA_SMI_SERVE_ARGS, "echo 0")
    right = subprocess.run([tool, *stand_ins.NVIDIA_SMI_SERVE_ARGS.split()], capture_output=True, text=True)
    assert (right.returncode, right.stdout) == (0, "0\n")
    wrong = subprocess.run([tool, "--query-gpu=index"], capture_output=True, text=True)
    assert wrong.returncode == stand_ins.WRONG_ARGUMENTS_EXIT and "unexpected arguments: --query-gpu=index" in wrong.stderr


def test_the_queries_are_the_ones_smc_sends():
    gpus = (ROOT / "supervisor_app" / "worker" / "gpus.py").read_text()
    assert '"nvidia-smi", ' + ", ".join(f'"{a}"' for a in stand_ins.NVIDIA_SMI_SERVE_ARGS.split()) in gpus
    resources = (ROOT / "supervisor_app" / "train" / "resources.py").read_text()
    assert f'[tool, "{stand_ins.NVIDIA_SMI_TRAIN_ARGS}"]' in resources
    assert f'[tool, "{stand_ins.NEURON_LS_ARGS}"]' in resources


def test_docs_name_every_stand_in():
    section = (ROOT / "docs" / "ARCHITECTURE.md").read_text().split("### Stand-ins", 1)[1]
    for name in ("`nvidia-smi`", "`neuron-ls`", "`tensorflow` module", "`torchrun`", "tests/engine/stand_in_engine.py",
                 "tests/fake_codeartifact.py", "tests/stand_ins.py"):
        assert name in section, name
