"""Checks of what `smc serve` loads: the model dir and the handler module."""

from __future__ import annotations

from supervisor_app import interpreter, usersite
from supervisor_app.config import Config
from supervisor_app.config.serve import ServeConfig
from supervisor_app.doctor.checks_python import check_handler_in
from supervisor_app.doctor.findings import FAIL, Finding, ok, warn
from supervisor_app.interpreter import Interpreter


def check_model_dir(serve: ServeConfig) -> Finding:
    model_dir = serve.model_dir
    if not model_dir.is_dir():
        return warn(
            "model_dir",
            f"{model_dir} does not exist",
            "SageMaker unpacks model.tar.gz there before `serve`; to check locally, put a model there",
            str(model_dir),
        )
    return ok("model_dir", f"{model_dir} holds {sum(1 for _ in model_dir.iterdir())} entries", str(model_dir))


def check_handler(config: Config, serve: ServeConfig, python: Interpreter | None) -> list[Finding]:
    """python: the interpreter that serves (None: it cannot run, doctor said why under `python`).
    The import itself is worker/check.py's, in this process or inside the image's Python."""
    app = serve.wsgi_app or serve.asgi_app
    if not serve.code_dir.is_dir() and not serve.model_dir.is_dir():
        wanted = f"{app.partition(':')[0].removesuffix('.py')}.py (SMC_{'WSGI' if serve.wsgi_app else 'ASGI'}_APP={app})" \
            if app else f"{serve.module_name}.py"
        return [
            warn(
                "handler",
                f"{wanted} is in none of {', '.join(map(str, serve.code_dirs_searched))} (nor is there a model yet)",
                f"serve looks in {serve.code_dir_rule}: COPY it into the image's code dir, or ship it under "
                "code/ in model.tar.gz",
            )
        ]
    if python is not None and not python.embedded:
        finding = check_handler_in(python, config, serve)
    else:
        from supervisor_app.serve.worker_plan import worker_settings
        from supervisor_app.worker.check import inspect

        usersite.prepare(config.prefix, config.environ)
        answer = inspect(worker_settings(serve, config.tmp_dir, 1, config.log_level,
                                         python or interpreter.embedded("doctor")))
        finding = Finding("handler", answer["status"], answer["message"], answer.get("hint", ""),
                          answer.get("path", ""))
    if finding.status == FAIL or app:
        return [finding]
    return [finding] + _program_and_requirements(serve, finding.path, python)


def _program_and_requirements(serve: ServeConfig, handler_path: str, python: Interpreter | None) -> list[Finding]:
    findings = []
    if serve.program != serve.program_requested:
        findings.append(
            warn(
                "handler",
                f"SAGEMAKER_PROGRAM={serve.program_requested} is not a handler in {serve.code_dir} (missing, or no "
                f"model_fn/predict_fn/transform_fn...); serve uses {serve.program}",
                "fine when the image's ENV names the training script; otherwise fix SAGEMAKER_PROGRAM",
                handler_path,
            )
        )
    pip = "smc python -m pip" if python is None or python.embedded else f"{python.argv[0]} -m pip"
    requirements = serve.code_dir / "requirements.txt"
    if requirements.exists():
        findings.append(
            warn(
                "handler_requirements",
                f"{requirements} exists; smc serve pip-installs it at every start"
                if serve.install_requirements else f"{requirements} exists; SMC_INSTALL_REQUIREMENTS=false skips it",
                f"install at image build time (RUN {pip} install -r requirements.txt): a start-time "
                "install costs start-up time and fails where the endpoint has no package index (VPC)",
                str(requirements),
            )
        )
    return findings
