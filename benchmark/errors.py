"""The one error type that reaches the user as a one-line message and exit code 2."""

from __future__ import annotations

import argparse
import errno
import sys
import traceback
from collections.abc import Callable, Iterable
from typing import NoReturn


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


def choices_error(what: str, value: object, valid: Iterable[str]) -> UserError:
    """Build the standard 'unknown X' error naming the bad value and the valid choices."""
    return UserError(f"unknown {what} {value!r}; valid choices: {', '.join(sorted(valid))}")


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose errors are UserErrors: one line and exit code 2 through
    run_command (argparse's own prints the usage, then the message)."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see --help")


INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def run_command(body: Callable[[], int], debug: bool = False) -> int:
    """Run a command's body with the suite's one exit policy: a UserError or an OS-level
    failure (disk full, permission denied, read-only folder) prints one line and returns 2;
    Ctrl-C prints one line and returns 130. Nothing else is caught: a bug keeps its traceback.
    ``debug`` (``--debug``) also prints the traceback of what caused a UserError (a plugin's
    import error, say) before its line."""
    try:
        return body()
    except UserError as e:
        if debug and e.__cause__ is not None:
            traceback.print_exception(e.__cause__)
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)  # one line, always
        return 2
    except OSError as e:
        where = f" {str(e.filename)!r}" if e.filename else ""
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            why = f"no space left on the device{where}; free some and re-run the same command to resume"
        else:
            why = f"cannot read or write{where}: {e.strerror or e}"
        print("error: " + why.replace("\n", " "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return INTERRUPTED
