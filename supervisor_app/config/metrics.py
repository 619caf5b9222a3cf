"""Settings of smc serve's metrics (docs/metrics.md): off unless asked for."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from supervisor_app.config.settings import Setting, choice, parse_int, parse_seconds, parse_str, read_settings
from supervisor_app.errors import ConfigError

METRICS_SETTINGS: tuple[Setting, ...] = (
    Setting("mode", ("SMC_METRICS",), choice("off", "emf"), "off",
            "`emf`: print CloudWatch Embedded Metric Format lines on stdout (SageMaker sends stdout to CloudWatch "
            "Logs, which turns them into metrics).", "serve"),
    Setting("port", ("SMC_METRICS_PORT",), parse_int, 0,
            "Serve Prometheus `GET /metrics` on this port (all interfaces); 0 = off.", "serve"),
    Setting("interval_s", ("SMC_METRICS_INTERVAL_SECONDS",), parse_seconds, 60.0,
            "Seconds between two EMF lines.", "serve"),
    Setting("namespace", ("SMC_METRICS_NAMESPACE",), parse_str, "smc",
            "CloudWatch namespace of the EMF metrics.", "serve"),
)


@dataclass(frozen=True)
class MetricsConfig:
    mode: str = "off"
    port: int = 0
    interval_s: float = 60.0
    namespace: str = "smc"

    @property
    def emf(self) -> bool:
        return self.mode == "emf"

    @property
    def enabled(self) -> bool:
        return self.emf or self.port > 0


def load_metrics_config(environ: Mapping[str, str], serving_port: int) -> MetricsConfig:
    config = MetricsConfig(**read_settings(METRICS_SETTINGS, environ))
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"SMC_METRICS_PORT={config.port} is not a TCP port",
                          hint="set SMC_METRICS_PORT to a number from 1 to 65535, or 0 for no /metrics endpoint")
    if config.port and config.port == serving_port:
        raise ConfigError(f"SMC_METRICS_PORT={config.port} is the serving port",
                          hint="/metrics needs a port of its own, e.g. SMC_METRICS_PORT=9100")
    if not config.namespace.strip():
        raise ConfigError("SMC_METRICS_NAMESPACE is empty", hint="set a CloudWatch namespace, e.g. smc")
    return config
