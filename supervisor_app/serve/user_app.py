"""Bring-your-own WSGI app: serve an existing Flask (or any WSGI) app, e.g. the `predictor:app` of
the nginx + gunicorn + Flask "bring your own container" scripts, unchanged, behind smc's nginx,
supervision, timeouts and JSON logs (SMC_WSGI_APP=module:attribute, module in the code dir).
Its answers stream as PEP 3333 describes (serve/response.py): an iterable body is sent piece by
piece as produced (chunked when it has no Content-Length), write() works, and hop-by-hop headers
the app sets are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor_app.errors import AppLoadError
from supervisor_app.serve.handlers import import_user_module


def parse_spec(spec: str) -> tuple[str, str]:
    """'predictor:app' -> ('predictor', 'app'); a bare module name means its `app` attribute."""
    module, _, attribute = spec.partition(":")
    return module.removesuffix(".py"), attribute or "app"


def load_user_app(code_dir: Path, spec: str) -> Any:
    module_name, attribute = parse_spec(spec)
    hint = f"put {module_name}.py (defining `{attribute}`) in {code_dir}, or fix SMC_WSGI_APP={spec}"
    module = import_user_module(code_dir, module_name, hint, what="WSGI app module")
    app = getattr(module, attribute, None)
    if app is None:
        raise AppLoadError(
            f"{module_name}.py has no attribute {attribute!r} (SMC_WSGI_APP={spec})",
            hint=f"name the WSGI app object: SMC_WSGI_APP={module_name}:<name>, e.g. {module_name}:app",
        )
    if not callable(app):
        raise AppLoadError(
            f"{module_name}.{attribute} is a {type(app).__name__}, not a WSGI app (SMC_WSGI_APP={spec})",
            hint="point SMC_WSGI_APP at a Flask app or another WSGI callable(environ, start_response)",
        )
    return app
