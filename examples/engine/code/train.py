"""Train a tiny scikit-learn classifier and save it where MLServer will serve it from.

smc train runs this with the image's python3; SageMaker packs SM_MODEL_DIR (/opt/ml/model) into
model.tar.gz, and `serve` gets it back in /opt/ml/model, where `mlserver start` finds
model-settings.json next to the model file.
"""

import json
import os

import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

model_dir = os.environ.get("SM_MODEL_DIR", "/opt/ml/model")
features, labels = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(features, labels)
print(f"training accuracy: {model.score(features, labels):.3f}", flush=True)

os.makedirs(model_dir, exist_ok=True)
joblib.dump(model, os.path.join(model_dir, "model.joblib"))
with open(os.path.join(model_dir, "model-settings.json"), "w") as f:
    json.dump({"name": "iris", "implementation": "mlserver_sklearn.SKLearnModel",
               "parameters": {"uri": "./model.joblib", "version": "v1"}}, f, indent=2)
print(f"saved model.joblib and model-settings.json to {model_dir}", flush=True)
