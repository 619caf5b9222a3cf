"""Process supervision that `smc serve` and `smc train` share: children in their own process
groups with relayed output (children.py), the select loop's core (loop.py), sidecar programs
with supervisord's policy (sidecars.py), the causes of deaths (causes.py) and the types the
loops take and give (types.py). serve/ builds its nginx + gunicorn (or engine) loop on it;
train/ runs sidecar programs with it. Nothing here imports serve/ or train/."""
