"""`smc doctor [train|serve] [--json]`: everything that would break train or serve, before SageMaker
finds out. Exit 0 when nothing fails (warnings allowed), 1 otherwise."""

from __future__ import annotations

import sys

from supervisor_app import exitcodes
from supervisor_app.config import Config
from supervisor_app.config.doctor import load_doctor_config
from supervisor_app.config.metrics import load_metrics_config
from supervisor_app.config.serve import ServeConfig, load_serve_config
from supervisor_app.doctor import checks_env, checks_serve, checks_train, report
from supervisor_app.doctor.checks_launchers import check_launchers
from supervisor_app.doctor.checks_mme import check_multi_model
from supervisor_app.doctor.checks_python import check_python
from supervisor_app.doctor.findings import FAIL, Finding, fail
from supervisor_app.doctor.image import check_image
from supervisor_app.errors import SmcError, UsageError

USAGE = "usage: smc doctor [train|serve] [--json] [--image IMAGE]"


def parse_args(args: list[str]) -> tuple[set[str], bool, str | None]:
    modes: set[str] = set()
    as_json = False
    image = None
    rest = iter(args)
    for arg in rest:
        if arg == "--json":
            as_json = True
        elif arg == "--image":
            image = next(rest, None)
            if not image:
                raise UsageError("smc doctor: --image needs an image name", hint=USAGE)
        elif arg in ("train", "serve"):
            modes.add(arg)
        elif arg in ("-h", "--help"):
            raise UsageError("smc doctor checks this container, or an image from the host", hint=USAGE)
        else:
            raise UsageError(f"smc doctor: unknown argument {arg!r}", hint=USAGE)
    return modes or {"train", "serve"}, as_json, image


def collect(config: Config, modes: set[str]) -> list[Finding]:
    findings = [checks_env.check_proc(), checks_env.check_tmp_dir(config)]
    serve: ServeConfig | None = None
    if "serve" in modes:
        try:
            serve = load_serve_config(config)
            load_metrics_config(serve)
        except SmcError as exc:
            findings.append(fail("serve_config", exc.message, exc.hint))
    findings.append(checks_env.check_user(serve))
    python, python_findings = check_python(config, serving="serve" in modes)
    findings += python_findings
    findings += checks_env.check_codeartifact(config)
    if "train" in modes:
        findings += checks_train.check_layout(config)
        findings += checks_train.check_config_files(config)
        train, job_findings = checks_train.load_job(config)
        findings += job_findings
        plan, plan_findings = checks_train.plan(config, train)
        findings += plan_findings
        findings += checks_train.check_entry_point(plan)
        findings += check_launchers(config, plan)
    if serve is not None:
        findings.append(checks_env.check_nginx(config, serve))
        findings.append(checks_env.check_port(serve))
        findings += checks_env.check_labels(serve, load_doctor_config(config))
        if serve.multi_model:
            findings += check_multi_model(config, serve, serve.multi_model)
        else:
            findings.append(checks_serve.check_model_dir(serve))
    from supervisor_app.doctor.checks_engine import check_engine, engine_command, engine_mode  # engine mode, SMC_PROGRAMS

    if serve is not None and not serve.multi_model and not engine_mode(config):
        findings += checks_serve.check_handler(config, serve, python)
    findings += check_engine(config, serve)
    if serve is not None:
        from supervisor_app.doctor.checks_sessions import check_sessions

        findings += check_sessions(serve, engine_command(config) if engine_mode(config) else None)
    return findings


def run(config: Config, args: list[str]) -> int:
    modes, as_json, image = parse_args(args)
    if image:
        findings = check_image(image, modes, config.environ)
        subject = f"image {image}"
    else:
        findings = collect(config, modes)
        subject = str(config.base_dir)
    render = report.render_json if as_json else report.render_human
    sys.stdout.write(render(findings, subject) + "\n")
    sys.stdout.flush()
    return exitcodes.FAILURE if any(f.status == FAIL for f in findings) else exitcodes.OK
