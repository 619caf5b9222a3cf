"""Fit a scikit-learn ridge regression on the `train` channel (CSV with header x1,x2,x3,y).

Hyperparameters (SageMaker passes them as --name value): --alpha (regularisation strength),
--fit-intercept (true/false). Writes model.joblib to SM_MODEL_DIR and copies inference.py into
SM_MODEL_DIR/code/ so `smc serve` finds the handler next to the model.
"""

import argparse
import glob
import json
import os
import shutil

import joblib
import numpy as np
from sklearn.linear_model import Ridge


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--fit-intercept", type=lambda s: s.lower() == "true", default=True)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    return parser.parse_args()


def load(channel):
    files = sorted(glob.glob(os.path.join(channel, "*.csv")))
    if not files:
        raise SystemExit(f"no .csv file in the train channel {channel}")
    table = np.vstack([np.loadtxt(f, delimiter=",", skiprows=1, ndmin=2) for f in files])
    return table[:, :-1], table[:, -1]


def main():
    args = parse_args()
    features, target = load(args.train)
    model = Ridge(alpha=args.alpha, fit_intercept=args.fit_intercept).fit(features, target)
    r2 = model.score(features, target)
    print(json.dumps({"rows": len(target), "alpha": args.alpha, "r2": round(r2, 6),
                      "coef": model.coef_.round(4).tolist(), "intercept": round(float(model.intercept_), 4)}))
    joblib.dump(model, os.path.join(args.model_dir, "model.joblib"))
    code_dir = os.path.join(args.model_dir, "code")
    os.makedirs(code_dir, exist_ok=True)
    shutil.copy(os.path.join(os.path.dirname(os.path.abspath(__file__)), "inference.py"), code_dir)


if __name__ == "__main__":
    main()
