"""The one error type that reaches the user as a one-line message and exit code 2."""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn, Optional


class UserError(Exception):
    """Bad input from the user: printed as one line, exit code 2, no traceback."""


class ForeignCheckpoint(Exception):
    """A stage checkpoint that does not fit the run resuming from it (another model, other
    methods, a method state of another shape): the run ignores it, says why, and starts the
    (method, seed) afresh. A method's ``load_state_dict`` raises it for state it cannot take;
    any other exception there is a bug and keeps its traceback."""


def choices_error(what: str, value: object, valid: Iterable[str]) -> UserError:
    """Build the standard 'unknown X' error naming the bad value and the valid choices."""
    return UserError(f"unknown {what} {value!r}; valid choices: {', '.join(sorted(valid))}")


class OneLineParser(argparse.ArgumentParser):
    """argparse's parser whose errors are UserErrors: one line and exit code 2 through
    run_command (argparse's own prints the usage, then the message). Every command takes
    ``--debug`` (read by ``command``)."""

    def __init__(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003  argparse's signature
        super().__init__(*args, **kwargs)
        self.add_argument("--debug", action="store_true", help=f"full tracebacks (also {DEBUG_ENV}=1)")

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message}; see --help")


DEBUG_ENV = "LDIFS_BENCH_DEBUG"
INTERRUPTED = 130  # the shell's code for a command stopped by Ctrl-C (128 + SIGINT)


def run_command(body: Callable[[], int], debug: bool = False) -> int:
    """Run a command's body with the suite's one exit policy: a UserError or an OS-level
    failure (disk full, permission denied, read-only folder) prints one line and returns 2;
    Ctrl-C prints one line and returns 130. Nothing else is caught: a bug keeps its traceback.
    ``debug`` (``--debug``, or LDIFS_BENCH_DEBUG=1) also prints the traceback behind the
    line (for a UserError, of what caused it: a plugin's import error, say) before it."""
    debug = debug or debug_enabled()
    try:
        return body()
    except UserError as e:
        if debug:
            traceback.print_exception(e.__cause__ if e.__cause__ is not None else e)
        print("error: " + str(e).replace("\n", " "), file=sys.stderr)  # one line, always
        return 2
    except OSError as e:
        if debug:
            traceback.print_exception(e)
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


def debug_enabled(argv: Sequence[str] = ()) -> bool:
    """``--debug`` among the arguments, or LDIFS_BENCH_DEBUG set to anything but 0."""
    return "--debug" in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def command(main: Callable[[list[str]], int]) -> Callable[[Optional[Sequence[str]]], int]:
    """The boundary of every entry point: decorate ``main(argv) -> int`` and it runs under
    ``run_command`` (a UserError or an OS error: one line, exit 2; Ctrl-C: 130; ``--debug``
    or LDIFS_BENCH_DEBUG=1: the traceback too). ``argv`` None reads ``sys.argv``."""

    @functools.wraps(main)
    def entry(argv: Optional[Sequence[str]] = None) -> int:
        args = list(sys.argv[1:] if argv is None else argv)
        return run_command(lambda: main(args), debug=debug_enabled(args))

    return entry
