"""Settings of `smc serve` and the frozen ServeConfig they make.

One timeout (SAGEMAKER_MODEL_SERVER_TIMEOUT, seconds) drives nginx, gunicorn and the app; the
derived limits are computed here so every layer agrees (see ServeConfig.*_timeout_s).
"""

from __future__ import annotations

import ast
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

from supervisor_app.config.core import Config
from supervisor_app.config.mme import load_mme_config
from supervisor_app.config.sessions import SessionsConfig, load_sessions_config
from supervisor_app.worker.settings import MmeSettings
from supervisor_app.config.settings import (
    Setting,
    choice,
    parse_bool,
    parse_int,
    parse_positive_int,
    parse_seconds,
    parse_str,
    read_settings,
)
from supervisor_app.errors import ConfigError
from supervisor_app.paths import Layout

REALTIME_MAX_PAYLOAD_MB = 6
BATCH_MAX_PAYLOAD_MB = 100
MIB = 1024 * 1024
DEFAULT_PROGRAM = "inference.py"


def parse_port(name: str, raw: str) -> int:
    port = parse_int(name, raw)
    if not 1 <= port <= 65535:
        raise ConfigError(f"{name}={raw!r} is not a TCP port", hint=f"set {name} to a number from 1 to 65535")
    return port


def parse_port_range(name: str, raw: str) -> tuple[int, int]:
    low, sep, high = raw.strip().partition("-")
    try:
        first, last = int(low), int(high)
    except ValueError:
        first = last = 0
    if not sep or not (1 <= first <= last <= 65535):
        raise ConfigError(
            f"{name}={raw!r} is not a port range",
            hint=f'{name} must be "FIRST-LAST" with 1 <= FIRST <= LAST <= 65535, e.g. 9000-9999',
        )
    return first, last


def parse_payload_mb(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if not 0 <= value <= BATCH_MAX_PAYLOAD_MB:
        raise ConfigError(
            f"{name}={raw!r} is outside 0..{BATCH_MAX_PAYLOAD_MB}",
            hint=f"SageMaker allows at most {BATCH_MAX_PAYLOAD_MB} MB; 0 means no limit (chunked batch bodies, "
            "Async Inference up to 1 GB)",
        )
    return value


def parse_batch_strategy(name: str, raw: str) -> str:
    # The API enum (MultiRecord) and the container env spelling (MULTI_RECORD) both occur.
    key = raw.strip().replace("_", "").upper()
    strategies = {"SINGLERECORD": "SINGLE_RECORD", "MULTIRECORD": "MULTI_RECORD"}
    if key not in strategies:
        raise ConfigError(
            f"{name}={raw!r} is not a batch strategy",
            hint=f"set {name} to SINGLE_RECORD or MULTI_RECORD (SingleRecord/MultiRecord also work)",
        )
    return strategies[key]


def parse_nonnegative_int(name: str, raw: str) -> int:
    value = parse_int(name, raw)
    if value < 0:
        raise ConfigError(f"{name}={raw!r} must not be negative", hint=f"set {name} to 0 or more")
    return value


def parse_nonnegative_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds", hint=f"set {name} to 0 or more, e.g. 5")
    return value


def parse_nonnegative_ms(name: str, raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        value = -1.0
    if value < 0:
        raise ConfigError(f"{name}={raw!r} is not a number of milliseconds", hint=f"set {name} to 0 or more, e.g. 5")
    return value


G = "serve"

SERVE_SETTINGS: tuple[Setting, ...] = (
    Setting("port", ("SAGEMAKER_BIND_TO_PORT",), parse_port, 8080,
            "TCP port nginx listens on, on all interfaces (SageMaker sets it for inference pipelines).", G),
    Setting("safe_port_range", ("SAGEMAKER_SAFE_PORT_RANGE",), parse_port_range, None,
            "Ports smc may use besides the bind port, `FIRST-LAST`; validated only: smc's inner "
            "listener is a unix socket, so it needs none.", G),
    Setting("timeout_s", ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT_SECONDS"),
            parse_seconds, 60.0,
            "Seconds one invocation may take. The handler is interrupted with a 504 at this limit; "
            "nginx waits 2 s longer and gunicorn recycles a stuck worker 5 s later, so the layers never "
            "disagree (no 502 from mismatched limits).", G),
    Setting("workers", ("SAGEMAKER_MODEL_SERVER_WORKERS",), parse_positive_int, None,
            "Number of gunicorn worker processes (one model copy each); default: CPUs available to "
            "the container (cgroup quota and CPU affinity).", G),
    Setting("program", ("SAGEMAKER_PROGRAM",), parse_str, DEFAULT_PROGRAM,
            "Handler module (`.py` optional) with model_fn/input_fn/predict_fn/output_fn or transform_fn. "
            "When the named file is not in the code dir, or defines no handler hook, and inference.py is "
            "there (an image whose ENV names its training script), inference.py is used and the log says so.", G),
    Setting("wsgi_app", ("SMC_WSGI_APP",), parse_str, None,
            "Serve your own WSGI app instead of the handler contract: `module:attribute` in the code dir, "
            "e.g. `predictor:app` of a Flask \"bring your own container\" project (Flask is bundled). "
            "smc still runs nginx, gunicorn, readiness, timeouts and JSON logs; /invocations and "
            "/execution-parameters go to your app.", G),
    Setting("asgi_app", ("SMC_ASGI_APP",), parse_str, None,
            "Serve your own ASGI app (FastAPI, Starlette) instead of the handler contract: `module:attribute` "
            "in the code dir, run by the bundled uvicorn in smc's gunicorn workers behind the same nginx; "
            "streaming responses pass unbuffered, and WebSocket works at /invocations-bidirectional-stream.", G),
    Setting("submit_dir", ("SAGEMAKER_SUBMIT_DIRECTORY",), parse_str, None,
            "Directory holding the handler module; default MODEL_DIR/code. An s3:// URL is not "
            "downloaded by serve: smc then uses MODEL_DIR/code and says so.", G),
    Setting("default_accept", ("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT",), parse_str, "application/json",
            "Response type when a request has no Accept header or accepts */*.", G),
    Setting("max_payload_mb", ("SAGEMAKER_MAX_PAYLOAD_IN_MB",), parse_payload_mb, REALTIME_MAX_PAYLOAD_MB,
            "Largest request body in MiB (413 above it): 6 for real-time endpoints, up to 100 for batch "
            "transform, 0 for no limit.", G),
    Setting("batch", ("SAGEMAKER_BATCH",), parse_bool, False,
            "Set by SageMaker Batch Transform; only reported by /execution-parameters.", G),
    Setting("batch_strategy", ("SAGEMAKER_BATCH_STRATEGY",), parse_batch_strategy, "MULTI_RECORD",
            "BatchStrategy reported by GET /execution-parameters (SINGLE_RECORD or MULTI_RECORD; the "
            "API spelling SingleRecord/MultiRecord is accepted).", G),
    Setting("max_concurrent_transforms", ("SAGEMAKER_MAX_CONCURRENT_TRANSFORMS",), parse_positive_int, None,
            "MaxConcurrentTransforms reported by GET /execution-parameters; default: the worker count.", G),
    Setting("batch_size", ("SMC_BATCH_SIZE", "SAGEMAKER_TS_BATCH_SIZE"), parse_positive_int, 1,
            "Dynamic batching of inference.py handlers: the most requests one worker runs as one "
            "batch_predict_fn call; 1 (default) is off. TorchServe's SAGEMAKER_TS_BATCH_SIZE is read "
            "when SMC_BATCH_SIZE is unset.", G),
    Setting("batch_delay_ms", ("SMC_BATCH_DELAY_MS", "SAGEMAKER_TS_MAX_BATCH_DELAY"), parse_nonnegative_ms, 5.0,
            "With batching on: the longest a request waits for companions before its batch runs, in "
            "milliseconds (TorchServe's SAGEMAKER_TS_MAX_BATCH_DELAY is read when unset).", G),
    Setting("startup_timeout_s", ("SAGEMAKER_STARTUP_TIMEOUT",), parse_seconds, 600.0,
            "Seconds allowed from start until a worker has loaded the model; then smc gives up (exit 1).", G),
    Setting("install_requirements", ("SMC_INSTALL_REQUIREMENTS",), parse_bool, True,
            "Install code/requirements.txt (next to the handler) once at start, before /ping turns 200, "
            "as sagemaker-inference does; false skips it (install at image build time instead).", G),
    Setting("requirements_timeout_s", ("SMC_REQUIREMENTS_TIMEOUT_SECONDS",), parse_seconds, 600.0,
            "Seconds the start-time pip install may take; then smc stops it and exits 1 with pip's last lines.", G),
    Setting("nginx", ("SMC_NGINX",), parse_str, None,
            "Path of the nginx binary; default: `nginx` found on PATH (e.g. apt-get install nginx-light).", G),
    Setting("stop_grace_s", ("SMC_STOP_GRACE_SECONDS",), parse_seconds, 25.0,
            "On SIGTERM/SIGINT: seconds to finish in-flight requests before children are killed "
            "(SageMaker sends SIGKILL 30 s after SIGTERM). A second signal stops at once.", G),
    Setting("preload_model", ("SMC_PRELOAD_MODEL",), parse_bool, False,
            "true: import the handler and run model_fn once in the gunicorn master before forking "
            "workers (copy-on-write sharing: one model in memory); default: once per worker.", G),
    Setting("health_interval_s", ("SMC_HEALTH_INTERVAL_SECONDS",), parse_seconds, 5.0,
            "Seconds between health checks of nginx and gunicorn (alive and answering).", G),
    Setting("health_timeout_s", ("SMC_HEALTH_TIMEOUT_SECONDS",), parse_seconds, 2.0,
            "Deadline of one health probe; a child failing 3 probes in a row is restarted.", G),
    Setting("restart_limit", ("SMC_RESTART_LIMIT",), parse_positive_int, 5,
            "Give-up policy: when one child has to be restarted this many times within "
            "SMC_RESTART_WINDOW_SECONDS, smc stops everything and exits with that child's status.", G),
    Setting("restart_window_s", ("SMC_RESTART_WINDOW_SECONDS",), parse_seconds, 60.0,
            "Window of the give-up policy, in seconds.", G),
    Setting("log_ping", ("SMC_LOG_PING",), parse_bool, False,
            "true: write access log lines for GET /ping too (off by default: SageMaker pings every few seconds).", G),
    Setting("drain_s", ("SMC_DRAIN_SECONDS",), parse_nonnegative_seconds, 5.0,
            "On SIGTERM/SIGINT, before nginx stops accepting: seconds during which nginx still answers "
            "requests on open connections, each with `Connection: close`, so keep-alive clients leave "
            "between requests; ends early once no client connection is open, and lasts until requests "
            "that started before the signal are answered (at most 80% of the stop grace). 0: no drain.", G),
    Setting("worker_crash_limit", ("SMC_WORKER_CRASH_LIMIT",), parse_positive_int, 10,
            "Give-up policy for gunicorn workers: when workers die unexpectedly (killed, crashed, "
            "timed out) this many times within SMC_WORKER_CRASH_WINDOW_SECONDS, smc stops and exits 1 "
            "naming the cause.", G),
    Setting("worker_crash_window_s", ("SMC_WORKER_CRASH_WINDOW_SECONDS",), parse_seconds, 60.0,
            "Window of the worker give-up policy, in seconds.", G),
    Setting("worker_connections", ("SMC_NGINX_WORKER_CONNECTIONS",), parse_positive_int, 16384,
            "nginx worker_connections (concurrent client connections, idle keep-alive ones included); "
            "smc raises its open-file limit to fit (up to the hard limit).", G),
    Setting("keepalive_s", ("SMC_KEEPALIVE_SECONDS",), parse_nonnegative_int, 75,
            "Seconds nginx keeps an idle client connection open (0 disables keep-alive).", G),
    # metrics (docs/metrics.md), checked further in config/metrics.py
    Setting("metrics_mode", ("SMC_METRICS",), choice("off", "emf"), "off",
            "`emf`: print CloudWatch Embedded Metric Format lines on stdout (SageMaker sends stdout to "
            "CloudWatch Logs, which turns them into metrics).", G),
    Setting("metrics_port", ("SMC_METRICS_PORT",), parse_int, 0,
            "Serve Prometheus `GET /metrics` on this port (all interfaces); 0 = off.", G),
    Setting("metrics_interval_s", ("SMC_METRICS_INTERVAL_SECONDS",), parse_seconds, 60.0,
            "Seconds between two EMF lines.", G),
    Setting("metrics_namespace", ("SMC_METRICS_NAMESPACE",), parse_str, "smc",
            "CloudWatch namespace of the EMF metrics.", G),
)


@dataclass(frozen=True)
class ServeConfig:
    model_dir: Path
    code_dir: Path
    code_dir_requested: str | None  # SAGEMAKER_SUBMIT_DIRECTORY as given, for messages
    code_dirs_searched: tuple[Path, ...]  # where the handler or app module was looked for, in order
    prefix: Path
    tmp_dir: Path
    port: int
    safe_port_range: tuple[int, int] | None
    timeout_s: float
    workers: int | None
    program: str
    program_requested: str  # SAGEMAKER_PROGRAM as given; differs from program after the fallback
    wsgi_app: str | None  # SMC_WSGI_APP: the user's own WSGI app instead of the handler contract
    asgi_app: str | None  # SMC_ASGI_APP: the user's own ASGI app, served by uvicorn
    default_accept: str
    max_payload_mb: int
    batch: bool
    batch_strategy: str
    max_concurrent_transforms: int | None
    batch_size: int  # SMC_BATCH_SIZE: 1 = no dynamic batching
    batch_delay_ms: float
    startup_timeout_s: float
    nginx: str | None
    install_requirements: bool
    requirements_timeout_s: float
    stop_grace_s: float
    preload_model: bool
    health_interval_s: float
    health_timeout_s: float
    restart_limit: int
    restart_window_s: float
    log_ping: bool
    worker_connections: int
    keepalive_s: int
    drain_s: float
    worker_crash_limit: int
    worker_crash_window_s: float
    path_env: str  # PATH, where nginx is looked up
    metrics_mode: str  # SMC_METRICS*: checked and used through config/metrics.py
    metrics_port: int
    metrics_interval_s: float
    metrics_namespace: str
    multi_model: MmeSettings | None = None  # SAGEMAKER_MULTI_MODEL=true: the /models API (config/mme.py)
    sessions: SessionsConfig = SessionsConfig(False, 1200, Path("/dev/shm/sagemaker_sessions"), None, "smc")

    @property
    def module_name(self) -> str:
        return self.program.removesuffix(".py")

    @property
    def code_dir_rule(self) -> str:
        """Where the code is looked for, in words, for hints (docs/serve.md, "Where the code lives")."""
        if len(self.code_dirs_searched) == 1:
            return f"SAGEMAKER_SUBMIT_DIRECTORY={self.code_dir_requested} is the only place looked in"
        return ("code/ inside model.tar.gz, then the image's code dir; SAGEMAKER_SUBMIT_DIRECTORY names "
                "another directory")

    @property
    def max_payload_bytes(self) -> int:
        """0 means no limit."""
        return self.max_payload_mb * MIB

    # The handler answers 504 at timeout_s; nginx gives up slightly later (504 too) and gunicorn's
    # arbiter kills a worker that ignored the deadline last, so each layer's limit covers the inner one.
    @property
    def nginx_timeout_s(self) -> float:
        return self.timeout_s + 2

    @property
    def gunicorn_timeout_s(self) -> float:
        return self.timeout_s + 5


def load_serve_config(config: Config) -> ServeConfig:
    values = read_settings(SERVE_SETTINGS, config.environ)
    layout = config.layout
    submit = values["submit_dir"]
    program = values["program"].strip()
    if not program or "/" in program:
        raise ConfigError(
            f"SAGEMAKER_PROGRAM={program!r} is not a module file name",
            hint="set SAGEMAKER_PROGRAM to a file name such as inference.py, relative to the code directory",
        )
    if values["wsgi_app"] and values["asgi_app"]:
        raise ConfigError(
            f"both SMC_WSGI_APP={values['wsgi_app']} and SMC_ASGI_APP={values['asgi_app']} are set",
            hint="set the one that matches your app: SMC_WSGI_APP for Flask/WSGI, SMC_ASGI_APP for FastAPI/ASGI",
        )
    if values["batch_size"] > 1 and (values["wsgi_app"] or values["asgi_app"]):
        app_env = "SMC_WSGI_APP" if values["wsgi_app"] else "SMC_ASGI_APP"
        raise ConfigError(
            f"batching (SMC_BATCH_SIZE or SAGEMAKER_TS_BATCH_SIZE = {values['batch_size']}) is for inference.py "
            f"handlers, but {app_env} serves your own app",
            hint="unset SMC_BATCH_SIZE/SAGEMAKER_TS_BATCH_SIZE, or serve an inference.py with batch_predict_fn",
        )
    program_requested = program
    multi_model = _no_batching_with_mme(load_mme_config(config.environ, config.base_dir, submit), values["batch_size"])
    app = values["wsgi_app"] or values["asgi_app"]
    modules = (app.partition(":")[0].removesuffix(".py"),) if app else (program, DEFAULT_PROGRAM)
    searched = _code_dirs(layout, submit)
    code_dir = next((d for d in searched if any(_module_exists(d, m) for m in modules)), searched[0])
    if not app and _module_exists(code_dir, DEFAULT_PROGRAM) and not _is_handler(code_dir, program):
        # One image serves as both training and inference container, and SAGEMAKER_PROGRAM
        # (ENV in the Dockerfile) names the training script, which is missing here or (in the
        # image's /opt/ml/code) sits beside inference.py: use the handler that is there.
        program = DEFAULT_PROGRAM
    return ServeConfig(
        model_dir=layout.model_dir,
        code_dir=code_dir,
        code_dir_requested=submit,
        code_dirs_searched=searched,
        prefix=config.prefix,
        tmp_dir=config.tmp_dir,
        path_env=config.environ.get("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"),
        **{k: v for k, v in values.items() if k not in ("submit_dir", "program")},
        program=program,
        program_requested=program_requested,
        multi_model=multi_model, sessions=load_sessions_config(config.environ, config.tmp_dir, multi_model is not None),
    )


def _no_batching_with_mme(mme: MmeSettings | None, batch_size: int) -> MmeSettings | None:
    if mme is not None and batch_size > 1:
        raise ConfigError(
            f"batching (SMC_BATCH_SIZE or SAGEMAKER_TS_BATCH_SIZE = {batch_size}) is not available with "
            "SAGEMAKER_MULTI_MODEL=true",
            hint="unset SMC_BATCH_SIZE/SAGEMAKER_TS_BATCH_SIZE for a multi-model endpoint",
        )
    return mme


def _code_dirs(layout: Layout, submit: str | None) -> tuple[Path, ...]:
    """Where serve looks for the handler or the app module, one rule for every mode (docs/serve.md):
    SAGEMAKER_SUBMIT_DIRECTORY when set to a local path; else code/ inside model.tar.gz
    (/opt/ml/model/code, the toolkit's place), then the image's code dir (/opt/ml/code, where
    `smc train` runs the script from and where Dockerfiles COPY code)."""
    if submit and not submit.startswith("s3://"):
        return (Path(submit),)
    return (layout.model_code_dir, layout.code_dir)


_HOOKS = frozenset({"model_fn", "input_fn", "predict_fn", "output_fn", "transform_fn"})


def _is_handler(code_dir: Path, program: str) -> bool:
    """Whether the module exists and defines a handler hook at its top level. Read with ast,
    nothing imported: a training script defines none. A module ast cannot read counts as a
    handler, so its import says what is wrong with it."""
    name = program[:-3] if program.endswith(".py") else program
    path = code_dir / f"{name}.py"
    if not path.is_file():
        return (code_dir / name / "__init__.py").is_file()
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return True
    defined = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    defined |= {target.id for node in tree.body if isinstance(node, ast.Assign)
                for target in node.targets if isinstance(target, ast.Name)}
    defined |= {alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                for alias in node.names}
    return bool(defined & _HOOKS)


def _module_exists(code_dir: Path, program: str) -> bool:
    name = program[:-3] if program.endswith(".py") else program
    return (code_dir / f"{name}.py").is_file() or (code_dir / name / "__init__.py").is_file()


def describe(config: ServeConfig) -> dict[str, object]:
    """The effective config as plain values for the start-up log line; secret-looking values hidden."""
    shown: dict[str, object] = {}
    for name in ServeConfig.__dataclass_fields__:
        value = getattr(config, name)
        if any(word in name for word in ("secret", "token", "password", "key")):
            value = "<redacted>"
        elif isinstance(value, Path):
            value = str(value)
        elif is_dataclass(value):
            value = {k: [str(p) for p in v] if isinstance(v, tuple) else v for k, v in asdict(value).items()}
        shown[name] = value
    shown.pop("path_env", None)
    return shown


__all__ = ["SERVE_SETTINGS", "ServeConfig", "describe", "load_serve_config"]
