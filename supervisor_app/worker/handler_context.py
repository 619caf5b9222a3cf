"""The per-request Context handed to handler hooks that take one more argument, in the shape
multi-model-server gives it (index 0 only), and the GPU a worker is pinned to (its gpu_id)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

_worker_gpu_id: int | None = None  # set in a worker pinned to a GPU (worker/gpus.py), before model_fn


def set_worker_gpu(gpu_id: int | None) -> None:
    global _worker_gpu_id
    _worker_gpu_id = gpu_id


class Context:
    """Per-request context in the shape multi-model-server hands to handlers (index 0 only)."""

    # X-Amzn-SageMaker-Adapter-Identifier's adapter (worker/adapters.py), and what load_adapter_fn
    # returned for it in this worker; class attributes: requests without one pay nothing.
    adapter: str | None = None
    adapter_model: object = None

    def __init__(self, model_dir: Path, headers: Mapping[str, str] | None = None, inference_id: str = "") -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": _worker_gpu_id, "batch_size": 1}
        self.model_name = "model"
        self.inference_id = inference_id
        self._headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.response_headers: dict[str, str] = {}
        self.response_content_type: str | None = None
        self.response_status: int | None = None
        self.request_processor = [self]
        # The request's stateful session (worker/sessions/state.py): a dict of JSON values with .id,
        # .expires_at and .path; None when the request names no session.
        self.session: Any = None

    @property
    def request_headers(self) -> dict[str, str]:
        return dict(self._headers)

    @property
    def custom_attributes(self) -> str | None:
        return self._headers.get("x-amzn-sagemaker-custom-attributes")

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self._headers.get(key.lower())

    def get_all_request_header(self, idx: int = 0) -> dict[str, str]:
        return dict(self._headers)

    def get_request_property(self, key: str) -> str | None:
        return self._headers.get(key.lower())

    def get_request_properties(self) -> dict[str, str]:
        return dict(self._headers)

    def set_response_header(self, idx: int, key: str, value: str) -> None:
        self.response_headers[key] = str(value)

    def add_response_property(self, key: str, value: str) -> None:
        self.response_headers[key] = str(value)

    def get_response_headers(self, idx: int = 0) -> dict[str, str]:
        return dict(self.response_headers)

    def set_response_content_type(self, idx: int | str = 0, value: str | None = None) -> None:
        """MMS's form (idx, value), or just (value): the index is always 0 here."""
        if value is None:
            if not isinstance(idx, str):
                raise TypeError("set_response_content_type takes (value) or (idx, value), "
                                f"e.g. set_response_content_type('text/event-stream'); got ({idx!r})")
            value = idx
        self.response_content_type = value

    def get_response_content_type(self, idx: int = 0) -> str | None:
        return self.response_content_type

    def set_response_status(self, code: int = 200, phrase: str = "", idx: int = 0) -> None:
        self.response_status = int(code)


__all__ = ["Context", "set_worker_gpu"]
