"""batch_predict_fn(inputs, model[, contexts]) -> list: one call for a batch of requests, and what
each request gets from it (docs/serve.md, "Dynamic batching"): its own prediction, or its own
error when the list holds an exception object in its place; a list of the wrong length (or no
list) fails the whole batch with one error naming both lengths."""

from __future__ import annotations

from typing import Any, List

from supervisor_app.errors import AppLoadError
from supervisor_app.worker.handlers import HandlerError, InferenceService, _handler_error


def missing_batch_hook(batch_size: int, handler_file: str) -> AppLoadError:
    """Batching on without the hook that runs a batch: the start error, with both ways out."""
    return AppLoadError(
        f"batching is on (SMC_BATCH_SIZE or SAGEMAKER_TS_BATCH_SIZE = {batch_size}) but {handler_file} defines "
        "no batch_predict_fn",
        hint="add batch_predict_fn(inputs, model) returning one prediction per input, in order; or "
        "unset SMC_BATCH_SIZE/SAGEMAKER_TS_BATCH_SIZE to serve with predict_fn one request at a time",
    )


def run_batch(service: InferenceService, inputs: List[Any], contexts: List[Any]) -> List[Any]:
    """batch_predict_fn over a batch: one prediction or HandlerError per input, in order. A
    wrong answer as a whole (not a list, wrong length, raising) is one HandlerError for all."""
    hook = "batch_predict_fn"
    try:
        if service.handlers.with_context[hook]:
            answer = service.handlers.hooks[hook](inputs, service.model, contexts)
        else:
            answer = service.handlers.hooks[hook](inputs, service.model)
    except Exception as exc:
        error = _handler_error(hook, exc, None)
        error.__cause__ = exc
        return [error] * len(inputs)
    if not isinstance(answer, (list, tuple)):
        raise HandlerError(500, f"{hook} returned {type(answer).__name__} for {len(inputs)} inputs; return a "
                           "list with one prediction per input, in order", hook)
    if len(answer) != len(inputs):
        raise HandlerError(500, f"{hook} returned {len(answer)} predictions for {len(inputs)} inputs; return "
                           "one prediction per input, in order", hook)
    results: List[Any] = []
    for item in answer:
        if isinstance(item, BaseException):
            error = _handler_error(hook, item, None) if isinstance(item, Exception) else \
                HandlerError(500, f"{hook} raised {type(item).__name__}", hook)
            error.__cause__ = item
            item = error
        results.append(item)
    return results



def predict_alone(service: InferenceService, data: Any, context: Any) -> Any:
    result = run_batch(service, [data], [context])[0]
    if isinstance(result, BaseException):
        raise result
    return result


__all__ = ["predict_alone", "run_batch"]
