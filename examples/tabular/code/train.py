"""Train a linear model y = w.x + b by gradient descent: pure Python, runs on any interpreter.

SageMaker script mode: hyperparameters arrive as arguments (--epochs 300 --learning-rate 0.05),
data in SM_CHANNEL_TRAIN (CSV files with columns x1,x2,x3,y), the model goes to SM_MODEL_DIR.
Each epoch prints `epoch=N train_mse=X;` for a metric regex such as `train_mse=([0-9.e+-]+);`.
"""

import argparse
import csv
import glob
import json
import os
import shutil

FEATURES = ["x1", "x2", "x3"]


def parse_args():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--learning-rate", type=float, default=0.05)
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "data"))
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "model"))
    return parser.parse_args()


def load_rows(directory):
    xs, ys = [], []
    for path in sorted(glob.glob(os.path.join(directory, "*.csv"))):
        with open(path, newline="") as f:
            for row in csv.reader(f):
                if not row or row[0] == FEATURES[0]:
                    continue  # blank line or header
                values = [float(v) for v in row]
                xs.append(values[:3])
                ys.append(values[3])
    if not xs:
        raise SystemExit(f"no CSV rows found in {directory}")
    return xs, ys


def mse(weights, intercept, xs, ys):
    total = 0.0
    for x, y in zip(xs, ys):
        error = sum(w * v for w, v in zip(weights, x)) + intercept - y
        total += error * error
    return total / len(xs)


def train(xs, ys, epochs, learning_rate):
    weights, intercept = [0.0] * len(FEATURES), 0.0
    n = len(xs)
    for epoch in range(1, epochs + 1):
        grad_w, grad_b = [0.0] * len(FEATURES), 0.0
        for x, y in zip(xs, ys):
            error = sum(w * v for w, v in zip(weights, x)) + intercept - y
            for i, v in enumerate(x):
                grad_w[i] += 2 * error * v / n
            grad_b += 2 * error / n
        weights = [w - learning_rate * g for w, g in zip(weights, grad_w)]
        intercept -= learning_rate * grad_b
        print(f"epoch={epoch} train_mse={mse(weights, intercept, xs, ys):.6f};")
    return weights, intercept


def main():
    args = parse_args()
    xs, ys = load_rows(args.train)
    print(f"training on {len(xs)} rows: epochs={args.epochs} learning_rate={args.learning_rate}")
    weights, intercept = train(xs, ys, args.epochs, args.learning_rate)
    os.makedirs(args.model_dir, exist_ok=True)
    with open(os.path.join(args.model_dir, "model.json"), "w") as f:
        json.dump({"feature_names": FEATURES, "weights": weights, "intercept": intercept}, f, indent=2)
    # Ship the serving handler with the model, as the SageMaker SDK's source_dir does.
    handler = os.path.join(os.path.dirname(os.path.abspath(__file__)), "inference.py")
    if os.path.isfile(handler):
        os.makedirs(os.path.join(args.model_dir, "code"), exist_ok=True)
        shutil.copy(handler, os.path.join(args.model_dir, "code", "inference.py"))
    print(f"model saved: weights={[round(w, 4) for w in weights]} intercept={intercept:.4f}")


if __name__ == "__main__":
    main()
