"""The user's handler module (inference.py) with sagemaker-inference-toolkit's contract.

Hooks: pre_model_fn(model_dir) and model_warmup_fn(model_dir, model) around model_fn(model_dir)
(optional, as sagemaker-inference 1.6+), input_fn(data, content_type), predict_fn(data, model),
output_fn(prediction, accept), or transform_fn(model, data, content_type, accept) instead of the
last three; each may take one more trailing argument, the request Context. Results may be
`body` or `(body, content_type)`; a body that is an iterator or generator (any iterable but bytes,
str, bytearray, memoryview, dict, list, tuple or a numpy array) is a stream: its chunks (bytes or
str) are sent as they are yielded (worker/streaming.py). Optional: execution_parameters_fn([context]) -> dict.
With SMC_BATCH_SIZE > 1, batch_predict_fn(inputs, model[, contexts]) -> list replaces predict_fn
(worker/batching.py); without batching, a handler that has only batch_predict_fn gets batches of one.

Status rules (documented in README): ContentError carries its own (400/406/415); an exception
with an int `status_code` attribute (e.g. the toolkit's GenericInferenceToolkitError) keeps it;
ValueError (JSONDecodeError, UnicodeDecodeError included) from input_fn or transform_fn is the
client's fault: 400; anything else is a handler crash: 500.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor_app.errors import AppLoadError
from supervisor_app.worker import content, records
from supervisor_app.worker.handler_context import Context

HOOKS = ("model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn", "execution_parameters_fn",
         "pre_model_fn", "model_warmup_fn", "batch_predict_fn", "load_adapter_fn", "unload_adapter_fn")
_ARITY = {"model_fn": 1, "input_fn": 2, "predict_fn": 2, "output_fn": 2, "transform_fn": 4,
          "execution_parameters_fn": 0, "pre_model_fn": 1, "model_warmup_fn": 2, "batch_predict_fn": 2,
          "load_adapter_fn": 3, "unload_adapter_fn": 2}
_TEXT_TYPES = (content.JSON, content.CSV)  # handed to input_fn as str, as the toolkit does


class HandlerError(Exception):
    """A request failed: HTTP status plus a message safe to show the client."""

    def __init__(self, status: int, message: str, hook: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.hook = hook


def _wants_context(fn: Callable[..., Any], arity: int) -> bool:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) > arity


@dataclass
class Handlers:
    module_name: str
    path: Path
    hooks: dict[str, Callable[..., Any]]
    with_context: dict[str, bool] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        return name in self.hooks

    def call(self, name: str, args: tuple[Any, ...], context: Context) -> Any:
        if self.with_context[name]:
            return self.hooks[name](*args, context)
        return self.hooks[name](*args)


def _missing_hint(module_path: Path, requested_dir: str | None) -> str:
    where = f"SAGEMAKER_SUBMIT_DIRECTORY={requested_dir}" if requested_dir else "MODEL_DIR/code"
    return (
        f"put your handler at {module_path} (looked in {where}), or set SAGEMAKER_PROGRAM to its file name; "
        "it must define model_fn and predict_fn (or transform_fn)"
    )


def import_user_module(code_dir: Path, module_name: str, missing_hint: str, what: str = "handler module") -> Any:
    """Import module_name from code_dir; AppLoadError tells a missing file from one raising on import."""
    path = code_dir / f"{module_name}.py"
    if not path.is_file() and not (code_dir / module_name / "__init__.py").is_file():
        raise AppLoadError(f"{what} {path} not found", hint=missing_hint)
    if str(code_dir) not in sys.path:
        sys.path.insert(0, str(code_dir))  # the toolkit also puts the code dir first: sibling imports work
    try:
        return importlib.import_module(module_name)
    except BaseException as exc:  # SystemExit from user code at import is a load failure too
        if isinstance(exc, KeyboardInterrupt):
            raise
        where = _user_frame(exc, path)
        raise AppLoadError(
            f"{path.name} raised {type(exc).__name__} on import: {exc}",
            hint=f"fix the error{where}; the traceback is in the log (event handler_import_failed)",
        ) from exc


def load_handlers(code_dir: Path, module_name: str, requested_dir: str | None = None) -> Handlers:
    """Import the handler module from code_dir; AppLoadError says missing vs raising and how to fix."""
    path = code_dir / f"{module_name}.py"
    module = import_user_module(code_dir, module_name, _missing_hint(path, requested_dir))
    hooks = {name: getattr(module, name) for name in HOOKS if callable(getattr(module, name, None))}
    handlers = Handlers(module_name, path, hooks)
    _validate(handlers)
    handlers.with_context = {name: _wants_context(fn, _ARITY[name]) for name, fn in hooks.items()}
    return handlers


def _user_frame(exc: BaseException, path: Path) -> str:
    """' at inference.py:12' for the deepest frame inside the user's code directory, if any."""
    frames = traceback.extract_tb(exc.__traceback__)
    user = [f for f in frames if Path(f.filename).parent == path.parent]
    if not user:
        return ""
    frame = user[-1]
    return f" at {Path(frame.filename).name}:{frame.lineno}"


def _validate(handlers: Handlers) -> None:
    name = handlers.path.name
    if handlers.has("transform_fn"):
        clash = [h for h in ("input_fn", "predict_fn", "output_fn", "batch_predict_fn") if handlers.has(h)]
        if clash:
            raise AppLoadError(
                f"{name} defines transform_fn together with {', '.join(clash)}",
                hint="transform_fn replaces input_fn, predict_fn (or batch_predict_fn) and output_fn: keep "
                "either transform_fn or the separate functions",
            )
    if not handlers.has("model_fn"):
        raise AppLoadError(f"{name} defines no model_fn", hint="add model_fn(model_dir) returning your loaded model")
    if not any(handlers.has(h) for h in ("predict_fn", "transform_fn", "batch_predict_fn")):
        raise AppLoadError(
            f"{name} defines neither predict_fn nor transform_fn",
            hint="add predict_fn(data, model) (input_fn/output_fn are optional), or transform_fn(model, data, "
            "content_type, accept)",
        )


def load_model(handlers: Handlers, model_dir: Path) -> Any:
    """pre_model_fn(model_dir), model_fn(model_dir), model_warmup_fn(model_dir, model), in the order
    sagemaker-inference 1.6+ calls them; a failure in any of them fails start-up the same way."""
    context = Context(model_dir)
    if handlers.has("pre_model_fn"):
        _load_step(handlers, "pre_model_fn", (str(model_dir),), context, model_dir)
    model = _load_step(handlers, "model_fn", (str(model_dir),), context, model_dir)
    if handlers.has("model_warmup_fn"):
        _load_step(handlers, "model_warmup_fn", (str(model_dir), model), context, model_dir)
    return model


def _load_step(handlers: Handlers, hook: str, args: tuple[Any, ...], context: Context, model_dir: Path) -> Any:
    try:
        return handlers.call(hook, args, context)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(
            f"{hook} raised {type(exc).__name__}: {exc}",
            hint=f"fix {hook}{_user_frame(exc, handlers.path)}; model_dir was {model_dir}; "
            "the traceback is in the log (event model_load_failed)",
        ) from exc


@dataclass(frozen=True)
class Result:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str]
    chunks: Iterator[Any] | None = None  # a streamed answer: body is then b""
    hook: str = ""  # the hook that made the answer, for messages about its stream


_NOT_STREAMS = (bytes, str, bytearray, memoryview, dict, list, tuple)


def is_stream(body: Any) -> bool:
    """An answer to send chunk by chunk: an iterator, or another iterable that is not a plain value."""
    if isinstance(body, _NOT_STREAMS) or not hasattr(body, "__iter__"):
        return False
    return isinstance(body, Iterator) or type(body).__module__.partition(".")[0] not in ("numpy", "pandas")


def _is_predicted_stream(prediction: Any) -> bool:
    """predict_fn's stream without an output_fn: an iterator, alone or as (iterator, content_type)."""
    if isinstance(prediction, tuple) and len(prediction) == 2 and isinstance(prediction[1], str):
        return isinstance(prediction[0], Iterator)
    return isinstance(prediction, Iterator)


class InferenceService:
    """One loaded model in one worker: turns a request into a Result or a HandlerError."""

    batcher: Any = None  # a worker/batching.Batcher when SMC_BATCH_SIZE > 1

    def __init__(self, handlers: Handlers, model: Any, model_dir: Path, default_accept: str) -> None:
        self.handlers = handlers
        self.model = model
        self.model_dir = model_dir
        self.default_accept = default_accept
        # The toolkit's defaults decode to numpy arrays; follow them when the user's env has numpy.
        uses_defaults = not handlers.has("transform_fn") and not (handlers.has("input_fn") and handlers.has("output_fn"))
        self.use_numpy = uses_defaults and content.numpy_available()
        self.encodable = content.encodable(self.use_numpy)
        if self.use_numpy:
            import numpy  # noqa: F401  # now, not during the first request

    def invoke(self, body: bytes, content_type: str, accept: str | None, context: Context) -> Result:
        kind, params = content.parse_media_type(content_type)
        if kind == content.JSON or kind in content.JSONLINES_TYPES:
            several = self._records(body, kind)
            if several is not None:
                return self._per_record(several, accept, context)
        preferred = content.preferred_type(accept, self.default_accept)
        handlers = self.handlers
        if handlers.has("transform_fn"):
            data = _decode_text(body, params) if kind in _TEXT_TYPES else body  # as the toolkit does
            result = self._hook("transform_fn", (self.model, data, kind, preferred), context, bad_input=ValueError)
            return self._result(result, preferred, context)
        # Choose the response type before running the model when the default encoder will answer;
        # an Accept it cannot encode (text/event-stream) is refused only if predict_fn's answer
        # turns out not to be a stream, which needs no encoder.
        unencodable: HandlerError | None = None
        chosen = preferred
        if not handlers.has("output_fn"):
            try:
                chosen = self._choose(accept)
            except HandlerError as exc:
                unencodable = exc
        if handlers.has("input_fn"):
            data = body
            if kind in _TEXT_TYPES:
                data = _decode_text(body, params)
            data = self._hook("input_fn", (data, kind), context, bad_input=ValueError)
        else:
            data = self._default("input_fn", lambda: content.decode(body, content_type, self.use_numpy))
        if self.batcher is not None:
            prediction = self.batcher.predict(data, context)
        elif handlers.has("predict_fn"):
            prediction = self._hook("predict_fn", (data, self.model), context)
        else:  # batch_predict_fn without batching on: a batch of one
            from supervisor_app.worker.batch_predict import predict_alone

            prediction = predict_alone(self, data, context)
        if not handlers.has("output_fn") and _is_predicted_stream(prediction):
            return self._result(prediction, chosen, context, "predict_fn")  # a stream: no encoder
        if unencodable is not None:
            raise unencodable
        if handlers.has("output_fn"):
            result = self._hook("output_fn", (prediction, chosen), context)
        else:
            result = self._default("output_fn", lambda: (content.encode(prediction, chosen), chosen))
        return self._result(result, chosen, context)

    def _records(self, body: bytes, kind: str) -> list[records.Record] | None:
        """A multi-record body to run record by record (worker/records.py), or None."""
        if kind == content.JSON:
            return records.several_documents(body)
        if self.handlers.has("input_fn") or self.handlers.has("transform_fn"):
            return records.lines(body)  # JSON Lines to a handler that decodes JSON itself
        return None  # the default input_fn decodes JSON Lines into a list of records

    def _per_record(self, lines: list[records.Record], accept: str | None, context: Context) -> Result:
        record_accept = records.record_accept(accept, content.JSONLINES_TYPES)

        def answer(line: bytes) -> tuple[bytes, str]:
            result = self.invoke(line, content.JSON, record_accept, context)
            if result.chunks is not None:
                raise HandlerError(500, "a record's answer was a stream; multi-record bodies need whole answers",
                                   result.hook)
            return result.body, result.content_type

        def failed(number: int, exc: Exception) -> HandlerError:
            assert isinstance(exc, HandlerError)
            return HandlerError(exc.status, f"record at line {number}: {exc.message}", exc.hook)

        body, kind = records.run(lines, answer, failed, HandlerError)
        if record_accept != accept:
            kind = content.JSONLINES
        return Result(context.response_status or 200, body, kind, dict(context.response_headers))

    def _choose(self, accept: str | None) -> str:
        try:
            return content.choose(accept, self.encodable, self.default_accept)
        except content.ContentError as exc:
            raise HandlerError(exc.status, exc.message) from exc

    def _default(self, hook: str, run: Callable[[], Any]) -> Any:
        try:
            return run()
        except content.ContentError as exc:
            raise HandlerError(exc.status, exc.message, hook) from exc
        except (TypeError, ValueError) as exc:
            # The default encoder could not represent what predict_fn returned: a handler bug.
            raise HandlerError(500, f"default {hook} failed: {exc}", hook) from exc

    def _hook(self, name: str, args: tuple[Any, ...], context: Context, bad_input: type | None = None) -> Any:
        try:
            return self.handlers.call(name, args, context)
        except Exception as exc:
            raise _handler_error(name, exc, bad_input) from exc

    def first_chunk(self, result: Result) -> tuple[bytes | None, Iterator[bytes]]:
        """(first non-empty chunk or None when it yielded nothing, the rest as bytes), with the hook's
        error rules: until a chunk is out, a failing stream is still an HTTP error answer."""
        assert result.chunks is not None
        stream = chunks_as_bytes(result.chunks, result.hook)
        bad_input = ValueError if result.hook == "transform_fn" else None
        return self.guard(result.hook, lambda: next(stream, None), bad_input), stream

    def guard(self, name: str, run: Callable[[], Any], bad_input: type | None = None) -> Any:
        try:
            return run()
        except Exception as exc:
            raise _handler_error(name, exc, bad_input) from exc

    def _result(self, result: Any, default_type: str, context: Context, hook: str = "") -> Result:
        body, kind = result, None
        if isinstance(result, tuple) and len(result) == 2:
            body, kind = result
        if type(body) is not bytes and is_stream(body):
            hook = hook or ("transform_fn" if self.handlers.has("transform_fn") else "output_fn")
            kind = kind or context.response_content_type or default_type
            return Result(context.response_status or 200, b"", str(kind), dict(context.response_headers),
                          chunks=iter(body), hook=hook)
        if isinstance(body, str):
            body = body.encode()
        elif isinstance(body, (bytearray, memoryview)):
            body = bytes(body)
        elif not isinstance(body, bytes):
            hook = hook or ("transform_fn" if self.handlers.has("transform_fn") else "output_fn")
            raise HandlerError(
                500,
                f"{hook} returned {type(body).__name__}; return bytes or str, a generator of them, "
                "or a (body, content_type) tuple",
                hook,
            )
        kind = kind or context.response_content_type or default_type
        return Result(context.response_status or 200, body, str(kind), dict(context.response_headers))

    def execution_parameters(self, defaults: dict[str, Any], context: Context) -> dict[str, Any]:
        if not self.handlers.has("execution_parameters_fn"):
            return defaults
        answer = self._hook("execution_parameters_fn", (), context)
        if isinstance(answer, (bytes, str)):
            import json

            answer = json.loads(answer)
        if not isinstance(answer, dict):
            raise HandlerError(500, f"execution_parameters_fn returned {type(answer).__name__}; return a dict")
        return {**defaults, **answer}


def _handler_error(name: str, exc: Exception, bad_input: type | None) -> HandlerError:
    """The HTTP answer for an exception from hook `name` (rules in the module docstring)."""
    if isinstance(exc, content.ContentError):
        return HandlerError(exc.status, exc.message, name)
    status = getattr(exc, "status_code", None)
    if isinstance(status, int) and 400 <= status <= 599:
        message = getattr(exc, "message", None) or str(exc)
        return HandlerError(status, str(message), name)
    if bad_input is not None and isinstance(exc, bad_input):
        return HandlerError(400, f"{name} rejected the input: {exc}", name)
    return HandlerError(500, f"{name} raised {type(exc).__name__}: {exc}", name)


def chunk_bytes(chunk: Any, hook: str) -> bytes:
    if isinstance(chunk, bytes):
        return chunk
    if isinstance(chunk, str):
        return chunk.encode()
    if isinstance(chunk, (bytearray, memoryview)):
        return bytes(chunk)
    raise TypeError(f"the stream of {hook} yielded {type(chunk).__name__}; yield bytes or str")


def chunks_as_bytes(chunks: Iterator[Any], hook: str) -> Iterator[bytes]:
    """Non-empty chunks as bytes (an empty one would end an HTTP/1.1 chunked body)."""
    for chunk in chunks:
        data = chunk_bytes(chunk, hook)
        if data:
            yield data


def _decode_text(body: bytes, params: dict[str, str]) -> str:
    charset = params.get("charset", "utf-8")
    try:
        return body.decode(charset)
    except (LookupError, UnicodeDecodeError) as exc:
        raise HandlerError(400, f"body is not valid {charset} text: {exc}") from exc
