"""Checks of a multi-model endpoint (SAGEMAKER_MULTI_MODEL=true): the image's fallback handler and
where models may be loaded from."""

from __future__ import annotations

from supervisor_app import usersite
from supervisor_app.config import Config
from supervisor_app.worker.settings import MmeSettings
from supervisor_app.config.serve import ServeConfig
from supervisor_app.doctor.findings import Finding, fail, ok, warn
from supervisor_app.errors import SmcError


def check_multi_model(config: Config, serve: ServeConfig, mme: MmeSettings) -> list[Finding]:
    from supervisor_app.worker.mme import models

    findings = []
    roots = ", ".join(str(root) for root in mme.model_roots)
    missing = [root for root in mme.model_roots if not root.is_dir()]
    if missing:
        findings.append(ok("mme_model_roots", f"models load from {roots} (SageMaker creates "
                                              f"{missing[0]} when it loads the first model)"))
    else:
        findings.append(ok("mme_model_roots", f"models load from {roots}"))
    found = models.image_handler_dir(serve.module_name, mme.handler_dirs)
    places = " or ".join(str(d / f"{serve.module_name}.py") for d in mme.handler_dirs)
    if found is None:
        findings.append(warn(
            "handler",
            f"no image handler ({places}): every model must bring its own code/{serve.module_name}.py",
            f"to serve models without code/, put the handler at {mme.handler_dirs[0] / (serve.module_name + '.py')} "
            "(COPY it in the Dockerfile) or set SMC_MME_HANDLER_DIR",
        ))
        return findings
    usersite.prepare(config.prefix, config.environ)
    try:
        loaded, _ = models.handlers_for(found / "__no_model__", serve.module_name, (found,))
    except SmcError as exc:
        return findings + [fail("handler", f"the image handler in {found}: {exc.message}",
                                exc.hint or "fix the handler; models without their own code/ use it",
                                str(found / f"{serve.module_name}.py"))]
    names = ", ".join(sorted(loaded.hooks))
    findings.append(ok("handler", f"image handler {loaded.path} imports and defines {names}; models without "
                                  f"their own code/{serve.module_name}.py use it", str(loaded.path)))
    return findings
