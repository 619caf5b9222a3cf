"""A model with its own handler (code/inference.py inside its model.tar.gz): it greets in capitals.

smc imports each model's own inference.py as a module of its own, so this file and the image's
handler never share globals; context.model_name is the name SageMaker loaded it under.
"""

import json
import os


def model_fn(model_dir, context):
    with open(os.path.join(model_dir, "words.json")) as f:
        return json.load(f)


def input_fn(data, content_type):
    if isinstance(data, bytes):
        data = data.decode("utf-8")
    return data.strip()


def predict_fn(text, words, context):
    return {"model": context.model_name, "answer": f"{words['greeting']} {text}".upper()}


def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
