"""A handler that streams: transform_fn returns a generator and its content type, and smc sends
each chunk to the client as soon as the generator yields it (server-sent events here)."""

import json
import time
from pathlib import Path


def model_fn(model_dir):
    # A real handler loads weights from model_dir; this "model" repeats the prompt word by word,
    # or the words of vocabulary.json when the model brings one.
    vocabulary = Path(model_dir) / "vocabulary.json"
    words = json.loads(vocabulary.read_text()) if vocabulary.exists() else None

    def generate(prompt):
        yield from words or prompt.split()

    return generate


def transform_fn(model, data, content_type, accept):
    prompt = json.loads(data)["prompt"]

    def events():
        for token in model(prompt):  # a real model's generate() yields as it decodes
            yield f"data: {json.dumps({'token': token})}\n\n"
            time.sleep(0.05)

    return events(), "text/event-stream"  # "application/jsonlines" works the same
