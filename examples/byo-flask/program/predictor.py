"""Inference app of the classic bring-your-own-container stack: a Flask app with GET /ping and
POST /invocations (CSV in, one predicted label per line out), using the decision tree that
`train` pickled into the model directory. Under smc it is served as SMC_WSGI_APP=predictor:app."""

import io
import os
import pickle

import flask
import pandas as pd

MODEL_PATH = os.path.join("/opt/ml/model", "decision-tree-model.pkl")


class ScoringService:
    """Holds the model, loaded on first use."""

    model = None

    @classmethod
    def get_model(cls):
        if cls.model is None:
            with open(MODEL_PATH, "rb") as f:
                cls.model = pickle.load(f)
        return cls.model

    @classmethod
    def predict(cls, features):
        return cls.get_model().predict(features)


app = flask.Flask(__name__)


@app.route("/ping", methods=["GET"])
def ping():
    try:
        healthy = ScoringService.get_model() is not None
    except OSError:
        healthy = False
    return flask.Response(response="\n", status=200 if healthy else 404, mimetype="application/json")


@app.route("/invocations", methods=["POST"])
def invocations():
    if flask.request.mimetype != "text/csv":
        return flask.Response(response="This predictor only supports CSV data", status=415,
                              mimetype="text/plain")
    features = pd.read_csv(io.StringIO(flask.request.data.decode("utf-8")), header=None)
    print(f"Invoked with {features.shape[0]} records")
    predictions = ScoringService.predict(features)
    out = io.StringIO()
    pd.DataFrame({"label": predictions}).to_csv(out, header=False, index=False)
    return flask.Response(response=out.getvalue(), status=200, mimetype="text/csv")
