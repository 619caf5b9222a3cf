"""The seed stack's Flask app, shaped like the scikit bring-your-own example's predictor.py:
a lazily loaded model, /ping that loads it, /invocations for CSV. The model code is the same
examples/tabular/code/inference.py that smc serves, so only the serving stack differs."""

import os
import sys

import flask

MODEL_DIR = os.environ["BENCH_MODEL_DIR"]
sys.path.insert(0, os.path.join(MODEL_DIR, "code"))
import inference


class ScoringService:
    model = None

    @classmethod
    def get_model(cls):
        if cls.model is None:
            cls.model = inference.model_fn(MODEL_DIR)
        return cls.model


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    health = ScoringService.get_model() is not None
    return flask.Response(response="\n", status=200 if health else 404, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def transformation():
    if flask.request.content_type != "text/csv":
        return flask.Response(response="This predictor only supports CSV data", status=415, mimetype="text/plain")
    rows = inference.input_fn(flask.request.data.decode("utf-8"), "text/csv")
    predictions = inference.predict_fn(rows, ScoringService.get_model())
    body, _ = inference.output_fn(predictions, "text/csv")
    return flask.Response(response=body, status=200, mimetype="text/csv")
