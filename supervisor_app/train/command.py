"""`smc train`: the SageMaker training contract (docker run IMAGE train).

Outline: read the config files -> resolve the entry point -> fill the code dir -> install
requirements -> export the SM_* environment -> run and supervise the script -> write
output/success or output/failure -> exit with the script's own code (128+n for signal n).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import time
import traceback
from pathlib import Path
from typing import Any

from supervisor_app import cpus, exitcodes, logs, process
from supervisor_app.config import Config
from supervisor_app.config.dist import load_dist_config
from supervisor_app.config.settings import parse_log_level, read_settings
from supervisor_app.config.train import TrainConfig, load_train_config
from supervisor_app.errors import (
    BootError,
    ConfigError,
    NotExecutableError,
    SmcError,
    UsageError,
    UserCodeError,
)
from supervisor_app.paths import Layout
from supervisor_app.train import (
    entry_point,
    environment,
    hyperparams,
    launchers,
    requirements,
    resources,
    runner,
)
from supervisor_app.train.cluster import discover
from supervisor_app.train.entry_point import Kind
from supervisor_app.train.launchers import Launcher, dispatch
from supervisor_app.train.requirements import InstallError


def run(config: Config, args: list[str]) -> int:
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
    # Until the script runs (download, DNS wait), a stop request ends the job at once; while a
    # child runs, runner.py takes these signals over and forwards them.
    for signum in runner.STOP_SIGNALS:
        signal.signal(signum, _raise_stop)
    try:
        return _train_reporting(config, layout, log)
    finally:
        process.stop_descendants(_sweep_grace_s(config), log)  # setsid()/double-forked leftovers of the script


def _sweep_grace_s(config: Config) -> float:
    from supervisor_app.config.train import TRAIN_SETTINGS

    try:
        return float(read_settings([s for s in TRAIN_SETTINGS if s.field == "stop_grace_s"], config.environ)["stop_grace_s"])
    except SmcError:
        return 30.0


def _train_reporting(config: Config, layout: Layout, log: Any) -> int:
    try:
        return _train(config, layout, log)
    except _StopRequested as stop:
        cause = f"Training stopped: smc received {process.signal_name(stop.signum)} while no training script was running"
        _fail(layout, cause, b"", log, exit_code=exitcodes.from_signal(stop.signum))
        return exitcodes.from_signal(stop.signum)
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


class _StopRequested(BaseException):
    """BaseException, so no `except Exception` on the way up can swallow a stop."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, frame: Any) -> None:
    raise _StopRequested(signum)


def _train(config: Config, layout: Layout, log: Any) -> int:
    train = load_train_config(config)
    split = hyperparams.split(train.hyperparameters)
    log = _apply_log_level(config, split, log)
    for key in train.not_string_keys:
        log.warning(
            "hyperparameter_not_string",
            key=key,
            file=str(layout.hyperparameters_file),
            hint="SageMaker passes every value as a string; smc uses this one as it is",
        )
    for key in train.undecoded_keys:
        log.info("hyperparameter_kept_raw", key=key, reason="not JSON")
    if not train.hyperparameters_file_found:
        log.info("hyperparameters_file_missing", file=str(layout.hyperparameters_file), using="{}")
    if train.framework_module:
        return _run_framework(train, split, layout, log)

    name = entry_point.validate_name(environment.user_entry_point(train, split))
    code_dir = layout.code_dir
    source = environment.module_dir(train, split)
    action = entry_point.prepare_code_dir(
        source, code_dir, train.tmp_dir, lambda url, dest: _s3_download(train, url, dest),
        train.archive_limits,
    )
    log.info("code_dir_ready", code_dir=str(code_dir), source=source, action=action)
    path = entry_point.entry_path(code_dir, name)
    kind = entry_point.kind_of(code_dir, name)
    if kind in (Kind.SHELL, Kind.COMMAND):
        entry_point.make_executable(path)
    python = entry_point.find_python(train.python, train.environ.get("PATH"))

    counts = _resources(train)
    training_env = environment.training_env(train, split, counts)
    launcher = launchers.choose(split.framework, training_env)
    hosts = list(train.resource_config["hosts"])
    if train.studio_local_mode:
        log.info("host_wait_skipped", reason="SM_STUDIO_LOCAL_MODE")
    elif launcher is Launcher.MPI:
        pass  # the MPI launcher waits for each peer's name and SSH port itself, with a line per peer
    elif len(hosts) > 1:
        _wait_for_hosts(hosts, train.host_wait_s, log)

    foreign = process.foreign_env(train.environ)
    base_env = (
        process.self_env(train.environ)
        if python.embedded and kind in (Kind.PROGRAM, Kind.PACKAGE) and launcher is Launcher.PROCESS
        else foreign
    )
    python_path = _python_path(code_dir, train.environ.get("PYTHONPATH", ""))
    env = environment.script_environment(base_env, train, split, counts, python_path)
    env.update(launchers.tf_config_env(split.framework, training_env))

    pip_argv = requirements.pip_command(kind, code_dir, python, train.prefix)
    if pip_argv is not None:
        pip_env = dict(base_env, PYTHONPATH=os.pathsep.join(python_path), PYTHONUNBUFFERED="1")
        requirements.install(pip_argv, pip_env, code_dir, train.stop_grace_s, log)

    user_args = hyperparams.to_argv(split.user)
    command = entry_point.build_command(kind, path, name, user_args, python)
    log.info(
        "training_environment",
        env={k: v for k, v in env.items() if k.startswith("SM_")},
        pythonpath=env["PYTHONPATH"],
    )
    if launcher is not Launcher.PROCESS:
        script = dispatch.Script(kind, name, user_args, python, code_dir, env, tuple(_sm_names(env)))
        return _run_distributed(config, train, split, training_env, launcher, script, log)
    log.info(
        "training_started",
        entry_point=name,
        kind=kind.value,
        command=command,
        cwd=str(code_dir),
        embedded_python=python.embedded if kind in (Kind.PROGRAM, Kind.PACKAGE) else None,
    )
    outcome = _start(command, env, code_dir, train, kind, name, path, user_args, log)
    return _finish(layout, name, outcome, train.stop_grace_s, log)


def _run_distributed(
    config: Config,
    train: TrainConfig,
    split: hyperparams.SplitHyperparameters,
    training_env: dict[str, Any],
    launcher: Launcher,
    script: dispatch.Script,
    log: Any,
) -> int:
    cluster = discover(training_env, split.framework)
    result = dispatch.run(launcher, cluster, train, load_dist_config(config), split.framework, script, log)
    return _finish(config.layout, script.name, result.outcome, train.stop_grace_s, log, cause=result.cause)


def _sm_names(env: dict[str, str]) -> list[str]:
    return [name for name in env if name.startswith("SM_")]


def _run_framework(
    train: TrainConfig, split: hyperparams.SplitHyperparameters, layout: Layout, log: Any
) -> int:
    """SAGEMAKER_TRAINING_MODULE=pkg.mod:fn (framework images): call it with the image's python,
    as the toolkit does in-process; smc still supervises, forwards signals and reports."""
    spec = train.framework_module or ""
    module, _, function = spec.partition(":")
    if not module or not function:
        raise ConfigError(
            f"SAGEMAKER_TRAINING_MODULE={spec!r} is not of the form package.module:function",
            hint="e.g. SAGEMAKER_TRAINING_MODULE=sagemaker_pytorch_container.training:main",
        )
    python = entry_point.find_python(train.python, train.environ.get("PATH"))
    code_dir = layout.code_dir
    code_dir.mkdir(parents=True, exist_ok=True)
    counts = _resources(train)
    python_path = _python_path(code_dir, train.environ.get("PYTHONPATH", ""))
    base_env = process.self_env(train.environ) if python.embedded else process.foreign_env(train.environ)
    env = environment.script_environment(base_env, train, split, counts, python_path)
    command = [*python.argv, "-c", _FRAMEWORK_CALL, spec]
    log.info("training_started", framework_module=spec, command=command, cwd=str(code_dir))
    outcome = runner.run(command, env, code_dir, train.stop_grace_s, log)
    return _finish(layout, spec, outcome, train.stop_grace_s, log)


_FRAMEWORK_CALL = (
    "import importlib, sys; module, _, fn = sys.argv[1].partition(':'); "
    "getattr(importlib.import_module(module), fn)()"
)


def _resources(train: TrainConfig) -> environment.Resources:
    foreign = process.foreign_env(train.environ)
    path = foreign.get("PATH")
    return environment.Resources(
        num_cpus=cpus.available_cpus(),
        num_gpus=resources.num_gpus(foreign),
        num_neurons=resources.num_neurons(
            str(train.resource_config.get("current_instance_type", "local")), foreign
        ),
        smddprun_installed=shutil.which("smddprun", path=path) is not None,
        smddpmprun_installed=shutil.which("smddpmprun", path=path) is not None,
    )


def _start(
    command: list[str],
    env: dict[str, str],
    code_dir: Path,
    train: TrainConfig,
    kind: Kind,
    name: str,
    path: Path,
    user_args: list[str],
    log: Any,
) -> runner.Outcome:
    try:
        return runner.run(command, env, code_dir, train.stop_grace_s, log)
    except OSError as exc:
        if exc.errno == errno.ENOEXEC and kind is Kind.COMMAND and _is_text(path):
            # As a shell would (and sh -c in sagemaker-training): a text file without #! is a sh script.
            log.info("entry_point_run_with_sh", entry_point=name, reason="no #! line")
            return runner.run(["/bin/sh", f"./{name}", *user_args], env, code_dir, train.stop_grace_s, log)
        # As a shell: 126 when the file is there but cannot be run (permissions, format, a #!
        # interpreter that is missing), else 1.
        error = NotExecutableError if exc.errno in (errno.ENOEXEC, errno.EACCES, errno.ENOENT) else UserCodeError
        raise error(
            f"cannot start entry point {name!r}: {_start_problem(exc, command)}", hint=_start_hint(exc, name)
        ) from None


def _start_problem(exc: OSError, command: list[str]) -> str:
    if exc.errno == errno.ENOEXEC:
        return "not an executable program (exec format error: not a script, or built for another CPU)"
    if exc.errno == errno.ENOENT:
        return f"{command[0]} or the interpreter on its #! line does not exist"
    if exc.errno == errno.EACCES:
        return "permission denied: not executable"
    return exc.strerror or str(exc)


def _start_hint(exc: OSError, name: str) -> str:
    if exc.errno == errno.ENOENT:
        return f"check the #! line of {name} and that its interpreter is installed in the image"
    return f"make {name} an executable (chmod +x, with a #! line), or name it .py or .sh"


def _finish(
    layout: Layout, name: str, outcome: runner.Outcome, grace_s: float, log: Any, cause: str | None = None
) -> int:
    code = outcome.exit_code
    if outcome.stop_signal is not None and cause is None:
        signame = process.signal_name(outcome.stop_signal)
        how = (
            f"killed with SIGKILL after the {grace_s:g} s grace period"
            if outcome.killed_after_grace
            else f"ended with {process.describe_exit(code)}"
        )
        cause = f"Training stopped: smc received {signame}; {name} {how}"
        _fail(layout, cause, outcome.stderr_tail, log, exit_code=exitcodes.from_signal(outcome.stop_signal))
        return exitcodes.from_signal(outcome.stop_signal)
    if code == 0 and outcome.stop_signal is None:
        runner.write_success(layout.success_file)
        log.info("training_succeeded", entry_point=name, exit_code=0)
        return exitcodes.OK
    cause = cause or f"Training script {name} failed: {process.describe_exit(code)}"
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


def _apply_log_level(config: Config, split: hyperparams.SplitHyperparameters, log: Any) -> Any:
    """The sagemaker_container_log_level hyperparameter sets smc's level too, as in the toolkit."""
    raw = split.launcher.get(hyperparams.LOG_LEVEL)
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


def _python_path(code_dir: Path, existing: str) -> list[str]:
    entries = [str(code_dir)]
    entries += [p for p in existing.split(os.pathsep) if p and p not in entries]
    return entries


def _wait_for_hosts(hosts: list[str], timeout_s: float, log: Any) -> None:
    """Other hosts' DNS names may appear after the container starts (SageMaker documents it)."""
    deadline = time.monotonic() + timeout_s
    delay_s = 0.1
    for host in hosts:
        while True:
            try:
                socket.gethostbyname(host)
                break
            except OSError:
                if time.monotonic() + delay_s > deadline:
                    raise BootError(
                        f"host {host!r} of resourceconfig.json does not resolve after {timeout_s:g} s",
                        hint="check the job's network; locally, set SM_STUDIO_LOCAL_MODE=true "
                        "or add the hosts to /etc/hosts",
                    ) from None
                log.info("host_not_resolvable_yet", host=host, retry_in_s=delay_s)
                time.sleep(delay_s)
                delay_s = min(delay_s * 2, 30.0)


def _s3_download(train: TrainConfig, url: str, dest: Path) -> None:
    from supervisor_app.train import s3  # only s3:// submit dirs pay for urllib/ssl

    s3.download(url, dest, train.s3, train.max_archive_bytes)


def _is_text(path: Path) -> bool:
    with path.open("rb") as f:
        return b"\0" not in f.read(1024)
