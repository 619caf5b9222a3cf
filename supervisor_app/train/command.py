"""`smc train`: the SageMaker training contract (docker run IMAGE train), as the job's story.

load the config files -> plan the job (plan.py: entry point, python, topology, launcher) ->
install (fill the code dir, plan the script, pip) -> run and supervise it with its launcher
(launch.py) -> finish: write output/success or output/failure and exit with the script's own
code (128+n for signal n).
"""

from __future__ import annotations

import traceback
from typing import Any

from supervisor_app import exitcodes, logs, process
from supervisor_app.config import Config
from supervisor_app.config.settings import parse_log_level, read_settings
from supervisor_app.config.train import TrainConfig, load_train_config
from supervisor_app.errors import ConfigError, SmcError, UsageError
from supervisor_app.paths import Layout
from supervisor_app.train import hyperparams, install, intermediate, launch, resources, runner
from supervisor_app.train.plan import plan_job
from supervisor_app.train.requirements import InstallError
from supervisor_app.train.script import plan_script


def run(config: Config, args: list[str]) -> int:
    if args[:1] == ["--programs"]:  # internal: the sidecar programs of SMC_PROGRAMS
        from supervisor_app.train.sidecars import run_programs

        return run_programs(config, args[1:])
    if args:
        raise UsageError(
            f"smc train takes no arguments, got {' '.join(args)!r}",
            hint="configure the job through /opt/ml/input/config and the environment",
        )
    log = logs.get_logger("train")
    layout = config.layout
    if not process.become_subreaper() and not process.is_pid1():
        log.debug("subreaper_unavailable")
    _remove_stale_status(layout, log)
    # Until the script runs (download, DNS wait), a stop request ends the job at once (cli.py set
    # process.stop_on_signals); while a child runs, runner.py takes these signals over and forwards them.
    sync = None
    try:
        sync = intermediate.start(config, log)  # sagemaker_s3_output: output/intermediate to S3
        from supervisor_app.train.sidecars import programs_beside_training

        with programs_beside_training(config, log):
            return _train(config, layout, log)
    except process.StopRequested as stop:
        code = exitcodes.from_signal(stop.signum)
        if layout.success_file.exists():  # written by this run: the script's success stands
            log.warning("stopped_after_training", signal=process.signal_name(stop.signum), exit_code=code,
                        why="a stop signal while smc finished up after a successful script (sidecar programs)")
            return code
        cause = f"Training stopped: smc received {process.signal_name(stop.signum)} while no training script was running"
        _fail(layout, cause, b"", log, exit_code=code)
        return code
    except InstallError as exc:
        _fail(layout, _with_hint(exc), exc.stderr_tail, log)
        return exitcodes.from_signal(exc.stop_signal) if exc.stop_signal else exitcodes.FAILURE
    except SmcError as exc:
        _fail(layout, _with_hint(exc), b"", log, logged=False)
        raise  # cli.py logs command_failed with the hint and exits with the error's code
    except Exception as exc:
        _fail(
            layout,
            f"smc internal error: {type(exc).__name__}: {exc}",
            traceback.format_exc().encode(),
            log,
            logged=False,
        )
        raise
    finally:
        process.stop_descendants(_sweep_grace_s(config), log)  # setsid()/double-forked leftovers of the script
        intermediate.finish(sync)  # after the sweep: every file the job wrote is closed


def _sweep_grace_s(config: Config) -> float:
    from supervisor_app.config.train import TRAIN_SETTINGS

    try:
        return float(read_settings([s for s in TRAIN_SETTINGS if s.field == "stop_grace_s"], config.environ)["stop_grace_s"])
    except SmcError:
        return 30.0


def _train(config: Config, layout: Layout, log: Any) -> int:
    train = load_train_config(config)
    log = _report_config(config, train, log)
    plan = plan_job(train, resources.probe(train))
    install.fill_code_dir(plan, log)
    script = plan_script(plan)
    launch.wait_for_hosts(plan, log)
    install.prepare_script(plan, script, log)
    log.info(
        "training_environment",
        env={k: v for k, v in script.env.items() if k.startswith("SM_")},
        pythonpath=script.env["PYTHONPATH"],
    )
    result = launch.run(config, plan, script, log)
    return _finish(layout, plan.name, result.outcome, train.stop_grace_s, log, cause=result.cause)


def _report_config(config: Config, train: TrainConfig, log: Any) -> Any:
    """What smc noticed in the config files, before it acts on them."""
    log = _apply_log_level(config, train, log)
    for key in train.not_string_keys:
        log.warning(
            "hyperparameter_not_string",
            key=key,
            file=str(config.layout.hyperparameters_file),
            hint="SageMaker passes every value as a string; smc uses this one as it is",
        )
    for key in train.undecoded_keys:
        log.info("hyperparameter_kept_raw", key=key, reason="not JSON")
    if not train.hyperparameters_file_found:
        log.info("hyperparameters_file_missing", file=str(config.layout.hyperparameters_file), using="{}")
    return log


def _finish(
    layout: Layout, name: str, outcome: runner.Outcome, grace_s: float, log: Any, cause: str | None = None
) -> int:
    code = outcome.exit_code
    if outcome.stop_signal is not None and cause is None:
        signame = process.signal_name(outcome.stop_signal)
        how = (
            f"killed with SIGKILL after the {grace_s:g} s grace period"
            if outcome.killed_after_grace
            else f"ended with {outcome.cause()}"
        )
        cause = f"Training stopped: smc received {signame}; {name} {how}"
        _fail(layout, cause, outcome.stderr_tail, log, exit_code=exitcodes.from_signal(outcome.stop_signal))
        return exitcodes.from_signal(outcome.stop_signal)
    if code == 0 and outcome.stop_signal is None:
        runner.write_success(layout.success_file)
        log.info("training_succeeded", entry_point=name, exit_code=0)
        return exitcodes.OK
    cause = cause or f"Training script {name} failed: {outcome.cause()}"
    code = exitcodes.from_signal(outcome.stop_signal) if outcome.stop_signal is not None else code
    _fail(layout, cause, outcome.stderr_tail, log, exit_code=code)
    return code


def _fail(
    layout: Layout,
    cause: str,
    stderr_tail: bytes,
    log: Any,
    exit_code: int | None = None,
    logged: bool = True,
) -> None:
    text = runner.failure_text(cause, stderr_tail)
    try:
        written = runner.write_failure(layout.failure_file, text)
    except OSError as exc:
        log.error("failure_file_not_written", file=str(layout.failure_file), error=str(exc))
        written = False
    if logged:
        log.error(
            "training_failed",
            cause=cause,
            exit_code=exit_code,
            failure_file=str(layout.failure_file),
            failure_file_kept=not written,
        )


def _with_hint(exc: SmcError) -> str:
    return f"{exc.message}\nHint: {exc.hint}" if exc.hint else exc.message


def _apply_log_level(config: Config, train: TrainConfig, log: Any) -> Any:
    """The sagemaker_container_log_level hyperparameter sets smc's level too, as in the toolkit."""
    raw = train.hyperparameters.get(hyperparams.LOG_LEVEL)
    if raw is None:
        return log
    try:
        level = parse_log_level(hyperparams.LOG_LEVEL, str(raw))
    except ConfigError:
        log.warning("log_level_ignored", hyperparameter=hyperparams.LOG_LEVEL, value=str(raw))
        return log
    logs.configure(level, config.log_format)
    return logs.get_logger("train")  # a bound logger keeps the level it was made with


def _remove_stale_status(layout: Layout, log: Any) -> None:
    # No user code has run yet: a status file here is left from an earlier run of this tree.
    for path in (layout.failure_file, layout.success_file):
        if path.is_file():
            path.unlink()
            log.info("stale_status_file_removed", file=str(path))
