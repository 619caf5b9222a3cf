"""Configuration: the only code that knows environment variable names.

cli.py hands a snapshot of os.environ to load_config(); every other module receives the
resulting frozen objects. Command-specific settings live beside core (train.py, serve.py)
and build on the core Config.
"""

from supervisor_app.config.core import CORE_SETTINGS, Config, load_config

__all__ = ["CORE_SETTINGS", "Config", "load_config"]
