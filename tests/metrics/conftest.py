"""The serve fixtures (a real smc serve with nginx and gunicorn) for the metrics tests."""

from tests.serve.conftest import start_server  # noqa: F401 (a fixture)
