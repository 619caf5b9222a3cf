"""Stateful sessions (SAGEMAKER_ENABLE_STATEFUL_SESSIONS): the wire protocol (protocol.py), the
file store every process shares (store.py) and a session's state as a handler sees it (state.py).
Handler mode (worker/wsgi.py) and engine mode (serve/engine/sessions.py) both use them."""
