"""Bring-your-own WSGI app: serve an existing Flask (or any WSGI) app, e.g. the `predictor:app` of
the nginx + gunicorn + Flask "bring your own container" scripts, unchanged, behind smc's nginx,
supervision, timeouts and JSON logs (SMC_WSGI_APP=module:attribute, module in the code dir).
Its answers stream as PEP 3333 describes (worker/response.py): an iterable body is sent piece by
piece as produced (chunked when it has no Content-Length), write() works, and hop-by-hop headers
the app sets are dropped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from supervisor_app.errors import AppLoadError
from supervisor_app.worker.handlers import import_user_module
from supervisor_app.worker.module_names import did_you_mean


def parse_spec(spec: str) -> tuple[str, str]:
    """'predictor:app' -> ('predictor', 'app'); a bare module name means its `app` attribute."""
    module, _, attribute = spec.partition(":")
    return module.removesuffix(".py"), attribute or "app"


def load_user_app(code_dir: Path, spec: str, kind: str = "WSGI", searched: tuple[Path, ...] = (),
                  rule: str = "") -> Any:
    """The app object `spec` names; kind is "WSGI" (SMC_WSGI_APP) or "ASGI" (SMC_ASGI_APP).
    searched and rule: where serve looked for it, and why there (config/serve.py), for the hint."""
    module_name, attribute = parse_spec(spec)
    env = f"SMC_{kind}_APP"
    places = " or ".join(map(str, searched or (code_dir,)))
    hint = f"put {module_name}.py (defining `{attribute}`) in {places}" + (f" ({rule})" if rule else "") + \
        f", or fix {env}={spec}"
    try:
        module = import_user_module(code_dir, module_name, hint, what=f"{kind} app module")
    except AppLoadError as exc:
        close = did_you_mean(module_name, searched or (code_dir,))
        if close and "not found" in exc.message:
            raise AppLoadError(exc.message + close, hint=exc.hint) from None
        raise
    app = getattr(module, attribute, None)
    if app is None:
        raise AppLoadError(
            f"{module_name}.py has no attribute {attribute!r} ({env}={spec})",
            hint=f"name the {kind} app object: {env}={module_name}:<name>, e.g. {module_name}:app",
        )
    if not callable(app):
        example = "a Flask app or another WSGI callable(environ, start_response)" if kind == "WSGI" else \
            "a FastAPI/Starlette app or another ASGI callable(scope, receive, send)"
        raise AppLoadError(
            f"{module_name}.{attribute} is a {type(app).__name__}, not {'a' if kind == 'WSGI' else 'an'} {kind} app "
            f"({env}={spec})",
            hint=f"point {env} at {example}",
        )
    return app
