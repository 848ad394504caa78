"""The one error type that reaches the user as a one-line message and exit code 2."""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


def choices_error(what: str, value: object, valid: Iterable[str]) -> UserError:
    """Build the standard 'unknown X' error naming the bad value and the valid choices."""
    return UserError(f"unknown {what} {value!r}; valid choices: {', '.join(sorted(valid))}")
