"""Names in smc serve's private run directory that the worker side shares with the supervisor and
nginx (the supervisor creates the directory; serve/nginx.py renders the config that uses them)."""

SOCKET_NAME = "gunicorn.sock"  # gunicorn binds it, nginx proxies to it
DRAIN_FILE = "draining"  # present while the supervisor drains: nginx answers 503, workers close WebSockets
WORKER_SETTINGS_FILE = "worker.json"  # the worker side's settings when the image's Python runs it
