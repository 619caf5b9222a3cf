"""One model of a multi-model endpoint inside one worker: its handler module and loaded model.

Each model's own MODEL_DIR/code/inference.py (SAGEMAKER_PROGRAM) is imported as a module of its
own (smc_mme_<n>), so two models' inference.py never share globals; modules it imports from its
own code dir are taken out of sys.modules again afterwards, so another model's `utils.py` is
not mistaken for this one's. Models without code/ use the image's handler (one import per
worker, shared; each model still gets its own model_fn result).
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import itertools
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from supervisor_app.errors import AppLoadError
from supervisor_app.worker import handlers as handler_module
from supervisor_app.worker.handlers import Context, Handlers, InferenceService, Result

_counter = itertools.count(1)
_FALLBACK: dict[Path, Handlers] = {}


class ModelService(InferenceService):
    """InferenceService that tells the handler which model it serves, as MMS's context does."""

    model_name = "model"

    def invoke(self, body: bytes, content_type: str, accept: str | None, context: Context) -> Result:
        context.model_name = self.model_name
        return super().invoke(body, content_type, accept, context)


@dataclass
class LoadedModel:
    name: str
    url: str
    path: Path
    service: ModelService
    module_names: list[str]  # what to drop from sys.modules on unload
    app: Any = None  # the per-model wsgi.App (set by the caller)


def _module_file(code_dir: Path, module_name: str) -> tuple[Path, list[str] | None] | None:
    package = code_dir / module_name / "__init__.py"
    if package.is_file():
        return package, [str(package.parent)]
    single = code_dir / f"{module_name}.py"
    return (single, None) if single.is_file() else None


def _import(code_dir: Path, module_name: str, unique: str) -> tuple[ModuleType, Path, list[str]]:
    found = _module_file(code_dir, module_name)
    if found is None:
        raise AppLoadError(f"{code_dir / (module_name + '.py')} not found")
    path, search = found
    before = set(sys.modules)
    spec = importlib.util.spec_from_file_location(unique, path, submodule_search_locations=search)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[unique] = module
    sys.path.insert(0, str(code_dir))  # sibling imports work as with the toolkit
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        sys.modules.pop(unique, None)
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).parent == code_dir]
        where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
        raise AppLoadError(f"{path.name} raised {type(exc).__name__} on import{where}: {exc}") from exc
    finally:
        try:
            sys.path.remove(str(code_dir))
        except ValueError:
            pass
    # Sibling modules of this model's code dir: keep them only through this module's references.
    own = [unique]
    for name in set(sys.modules) - before:
        file = getattr(sys.modules[name], "__file__", None) or ""
        if name != unique and file.startswith(str(code_dir) + "/"):
            del sys.modules[name]
    return module, path, own


def _handlers(module: ModuleType, path: Path) -> Handlers:
    hooks = {name: getattr(module, name) for name in handler_module.HOOKS if callable(getattr(module, name, None))}
    loaded = Handlers(module.__name__, path, hooks)
    handler_module._validate(loaded)
    loaded.with_context = {name: handler_module._wants_context(fn, handler_module._ARITY[name])
                           for name, fn in hooks.items()}
    return loaded


def image_handler_dir(module_name: str, candidates: tuple[Path, ...]) -> Path | None:
    return next((d for d in candidates if _module_file(d, module_name) is not None), None)


def handlers_for(model_dir: Path, module_name: str, fallback_dirs: tuple[Path, ...]) -> tuple[Handlers, list[str]]:
    """The model's own code/<module> if present, else the image's handler (first of fallback_dirs)."""
    code_dir = model_dir / "code"
    if _module_file(code_dir, module_name) is not None:
        module, path, names = _import(code_dir, module_name, f"smc_mme_{next(_counter)}")
        return _handlers(module, path), names
    fallback_dir = image_handler_dir(module_name, fallback_dirs)
    if fallback_dir is None:
        where = " or ".join(str(d / f"{module_name}.py") for d in fallback_dirs)
        raise AppLoadError(
            f"no handler: neither {code_dir}/{module_name}.py nor the image's {where} exists",
            hint="ship code/inference.py inside the model's model.tar.gz, or put the image's handler in "
            f"one of {', '.join(str(d) for d in fallback_dirs)} (SMC_MME_HANDLER_DIR sets the place)",
        )
    cached = _FALLBACK.get(fallback_dir)
    if cached is None:
        module, path, _ = _import(fallback_dir, module_name, "smc_mme_image_handler")
        cached = _FALLBACK[fallback_dir] = _handlers(module, path)
    return cached, []


def load(name: str, url: str, model_dir: Path, module_name: str, fallback_dirs: tuple[Path, ...],
         default_accept: str) -> LoadedModel:
    """Import the handler and run model_fn; AppLoadError (message names the hook) on failure."""
    handlers, module_names = handlers_for(model_dir, module_name, fallback_dirs)
    context = Context(model_dir)
    context.model_name = name
    hook = "model_fn"
    try:
        if handlers.has("pre_model_fn"):
            hook = "pre_model_fn"
            handlers.call("pre_model_fn", (str(model_dir),), context)
        hook = "model_fn"
        model = handlers.call("model_fn", (str(model_dir),), context)
        if handlers.has("model_warmup_fn"):
            hook = "model_warmup_fn"
            handlers.call("model_warmup_fn", (str(model_dir), model), context)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        _drop_modules(module_names)
        if isinstance(exc, MemoryError):
            raise
        raise AppLoadError(f"{hook} raised {type(exc).__name__}: {exc}") from exc
    service = ModelService(handlers, model, model_dir, default_accept)
    service.model_name = name
    return LoadedModel(name, url, model_dir, service, module_names)


def unload(model: LoadedModel) -> None:
    """Drop every reference this worker holds and give freed heap back to the system."""
    _drop_modules(model.module_names)
    model.service.model = None
    model.service = None  # type: ignore[assignment]
    model.app = None
    gc.collect()
    trim_heap()


def _drop_modules(names: list[str]) -> None:
    for name in names:
        sys.modules.pop(name, None)


def trim_heap() -> None:
    """glibc keeps freed small allocations in its arenas; malloc_trim returns them to the system."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
