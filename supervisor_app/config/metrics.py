"""smc serve's metrics settings (docs/metrics.md), off unless asked for; declared with the serve
settings (SMC_METRICS*), checked here."""

from __future__ import annotations

from dataclasses import dataclass

from supervisor_app.config.serve import ServeConfig
from supervisor_app.errors import ConfigError


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


def load_metrics_config(serve: ServeConfig) -> MetricsConfig:
    config = MetricsConfig(serve.metrics_mode, serve.metrics_port, serve.metrics_interval_s, serve.metrics_namespace)
    if not 0 <= config.port <= 65535:
        raise ConfigError(f"SMC_METRICS_PORT={config.port} is not a TCP port",
                          hint="set SMC_METRICS_PORT to a number from 1 to 65535, or 0 for no /metrics endpoint")
    if config.port and config.port == serve.port:
        raise ConfigError(f"SMC_METRICS_PORT={config.port} is the serving port",
                          hint="/metrics needs a port of its own, e.g. SMC_METRICS_PORT=9100")
    return config
