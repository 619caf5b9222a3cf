"""The bounded soak (bench/soak.py) in its short CI mode: about a minute of mixed valid, invalid,
large and slow requests with random worker kills and a drain at the end; nothing may be lost."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from tests.serve.conftest import nginx_required


pytestmark = pytest.mark.slow


def test_soak_short_mode_loses_nothing(smc_binary, tmp_path):
    nginx_required()
    summary_path = tmp_path / "soak.json"
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), "--smc", str(smc_binary), "--ci",
                          "--json", str(summary_path)], capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["lost"] == 0 and summary["worker_kills"] >= 5 and summary["sent"] > 500, summary
    print(run.stdout.splitlines()[-1])
