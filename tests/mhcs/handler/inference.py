"""Handler-mode model for the MHCS differential: answers what it got, as JSON, for any body."""
import json


def model_fn(model_dir):
    return {}


def transform_fn(model, data, content_type, accept):
    size = len(data.encode() if isinstance(data, str) else data)
    return json.dumps({"content_type": content_type, "bytes": size}), "application/json"
