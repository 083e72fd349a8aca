"""Errors that end a run with exit code 2: the audit could not be set up, so nothing is reported."""

from __future__ import annotations

# The exit codes of every command (DESIGN.md): the gate passed, the gate failed, and this
# module's errors (nothing reported).
EXIT_PASSED, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input, configuration or options. The message is one line a user can act on."""


class InputError(UsageError):
    """A model or data file that cannot be read, or data the model cannot be queried with."""


class ConfigError(UsageError):
    """A configuration file or environment variable that is malformed or names unknown keys."""


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type's name when the message is empty."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ModelNotRunnable(Exception):
    """The artifact loaded and is safe, but it holds no runnable model (weights only)."""
