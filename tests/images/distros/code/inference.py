"""The serving handler of the distribution tests: doubles a number."""


def model_fn(model_dir):
    return {"factor": 2}


def transform_fn(model, body, content_type, accept):
    return str(float(body) * model["factor"]), "text/plain"
