"""Handler-mode model for the MHCS differential: answers what it got, as JSON, for any body; keeps
the adapters smc loads (load_adapter_fn / unload_adapter_fn) in the model."""
import json
import os


def model_fn(model_dir):
    return {"adapters": {}}


def load_adapter_fn(name, src, model):
    with open(os.path.join(src, "adapter_config.json")) as f:
        model["adapters"][name] = json.load(f)


def unload_adapter_fn(name, model):
    model["adapters"].pop(name)


def transform_fn(model, data, content_type, accept):
    size = len(data.encode() if isinstance(data, str) else data)
    return json.dumps({"content_type": content_type, "bytes": size, "adapters": sorted(model["adapters"])}), \
        "application/json"
