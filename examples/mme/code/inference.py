"""The image's handler of the multi-model example: a linear model in model.json, pure Python.

model.json = {"feature_names": [...], "weights": [w1, w2, w3], "intercept": b}. Requests: text/csv
(one row of 3 numbers per line) or application/json ({"instances": [[...], ...]}). Answers:
{"predictions": [...]} as JSON, or one value per line as CSV.
"""

import csv
import io
import json
import os

N_FEATURES = 3
TYPES = ("application/json", "text/csv")


class RequestError(Exception):
    """smc answers with `status_code` (sagemaker-inference's own error classes carry it too)."""

    def __init__(self, status_code, message):
        super().__init__(message)
        self.status_code = status_code


def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    if len(model["weights"]) != N_FEATURES:
        raise ValueError(f"model.json has {len(model['weights'])} weights, expected {N_FEATURES}")
    return model


def _rows(rows):
    parsed = []
    for number, row in enumerate(rows, 1):
        if len(row) != N_FEATURES:
            raise ValueError(f"row {number} has {len(row)} values, expected {N_FEATURES}")
        try:
            parsed.append([float(x) for x in row])
        except (TypeError, ValueError):
            raise ValueError(f"row {number} has a value that is not a number: {row!r}") from None
    return parsed


def input_fn(data, content_type):
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    if content_type == "text/csv":
        return _rows([row for row in csv.reader(io.StringIO(data)) if row])
    if content_type == "application/json":
        body = json.loads(data)
        if isinstance(body, dict):
            body = body.get("instances")
        if not isinstance(body, list):
            raise ValueError('expected {"instances": [[x1, x2, x3], ...]} or a list of rows')
        if body and not isinstance(body[0], list):
            body = [body]
        return _rows(body)
    raise RequestError(415, f"unsupported content type {content_type}; send text/csv or application/json")


def predict_fn(rows, model):
    weights, intercept = model["weights"], model["intercept"]
    return [sum(w * x for w, x in zip(weights, row)) + intercept for row in rows]


def output_fn(predictions, accept):
    if accept == "text/csv":
        return "".join(f"{p}\n" for p in predictions), "text/csv"
    if accept in ("application/json", "*/*"):
        return json.dumps({"predictions": predictions}), "application/json"
    raise RequestError(406, f"cannot answer as {accept}; accept one of {', '.join(TYPES)}")
