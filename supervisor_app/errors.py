"""Errors that end smc with a message, a hint on how to fix it, and an exit code."""

from __future__ import annotations

from typing import ClassVar

from supervisor_app import exitcodes


class SmcError(Exception):
    exit_code: ClassVar[int] = exitcodes.FAILURE

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message

    def render(self) -> str:
        """The text a person reads: what is wrong, then how to fix it."""
        if self.hint:
            return f"Error: {self.message}\nHint: {self.hint}"
        return f"Error: {self.message}"


class UsageError(SmcError):
    exit_code = exitcodes.USAGE


class ConfigError(SmcError):
    exit_code = exitcodes.CONFIG


class BootError(SmcError):
    exit_code = exitcodes.BOOT


class AppLoadError(SmcError):
    exit_code = exitcodes.APP_LOAD


class UserCodeError(SmcError):
    exit_code = exitcodes.FAILURE


class NotExecutableError(SmcError):
    """The entry point exists but cannot be run (a shell's 126)."""

    exit_code = exitcodes.NOT_EXECUTABLE


class NotFoundError(SmcError):
    """The entry point is not in the code dir (a shell's 127)."""

    exit_code = exitcodes.NOT_FOUND
