"""Serve the ridge model of train.py: text/csv or application/json in and out.

CSV: one row of features per line. JSON: {"instances": [[x1, x2, x3], ...]}, a list of rows, or a
single row. Answers {"predictions": [...]} as JSON, or one value per line as CSV.
"""

import io
import json
import os

import joblib
import numpy as np


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))


def input_fn(data, content_type):
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    if content_type == "text/csv":
        rows = np.loadtxt(io.StringIO(data), delimiter=",", ndmin=2)
    elif content_type == "application/json":
        body = json.loads(data)
        rows = np.asarray(body["instances"] if isinstance(body, dict) else body, dtype=float)
        rows = rows.reshape(1, -1) if rows.ndim == 1 else rows
    else:
        raise ValueError(f"unsupported content type {content_type}; send text/csv or application/json")
    return rows


def predict_fn(rows, model):
    return model.predict(rows)


def output_fn(predictions, accept):
    if accept == "text/csv":
        return "".join(f"{p:.6g}\n" for p in predictions), "text/csv"
    return json.dumps({"predictions": [round(float(p), 6) for p in predictions]}), "application/json"
