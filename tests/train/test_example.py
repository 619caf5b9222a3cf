"""The demo's training job through the frozen binary: examples/tabular learns the true weights."""

from __future__ import annotations

import json
import re
import shutil

import pytest
from trainkit import ROOT, make_job, train_env, write_json

EXAMPLE = ROOT / "examples" / "tabular"
TRUE_WEIGHTS, TRUE_INTERCEPT = [2.0, -3.0, 0.5], 1.0


@pytest.mark.parametrize("python", ["embedded", "image"])
def test_tabular_example_trains_the_true_model(smc, tmp_path, python):
    base = make_job(tmp_path)
    (base / "input/data/train").mkdir()
    shutil.copy(EXAMPLE / "data" / "train.csv", base / "input/data/train/train.csv")
    write_json(
        base / "input/config/inputdataconfig.json",
        {"train": {"ContentType": "text/csv", "TrainingInputMode": "File"}},
    )
    write_json(
        base / "input/config/hyperparameters.json",
        {
            "epochs": "300",
            "learning-rate": "0.05",
            "sagemaker_program": json.dumps("train.py"),
            "sagemaker_submit_directory": json.dumps(str(EXAMPLE / "code")),
        },
    )
    extra = {"SMC_PYTHON": "embedded", "SMC_PREFIX": str(tmp_path / "prefix")} if python == "embedded" else {}
    done = smc("train", env=train_env(base, **extra), timeout=180)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    metrics = re.findall(r"^epoch=(\d+) train_mse=([0-9.]+);$", done.stdout, re.MULTILINE)
    assert len(metrics) == 300
    assert float(metrics[-1][1]) < 0.01 < float(metrics[0][1])
    model = json.loads((base / "model/model.json").read_text())
    assert model["feature_names"] == ["x1", "x2", "x3"]
    for learned, true in zip(model["weights"], TRUE_WEIGHTS):
        assert abs(learned - true) < 0.05
    assert abs(model["intercept"] - TRUE_INTERCEPT) < 0.05
    if (EXAMPLE / "code" / "inference.py").exists():
        assert (base / "model/code/inference.py").read_text() == (EXAMPLE / "code/inference.py").read_text()
