"""Logging for the suite: standard module loggers under three package roots, one console
handler (its level set by ``-q``), one ``run.log`` file handler per run.

Modules log with ``logging.getLogger(__name__)``; nothing is printed through ad-hoc calls.
The console handler writes through ``tqdm.write`` so that lines land between progress bars
instead of through them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

from tqdm.auto import tqdm

ROOTS = ("benchmark", "methods", "tasks")  # the suite's packages: every module logger is under one
_CONSOLE_NAME = "ldifs-bench-console"


class TqdmHandler(logging.Handler):
    """A console handler that prints between tqdm bars (stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)  # stdout stays for results
        except Exception:  # noqa: BLE001  (logging must never raise into the run)
            self.handleError(record)


def _roots() -> list[logging.Logger]:
    return [logging.getLogger(name) for name in ROOTS]


def setup_console(quiet: bool = False) -> None:
    """Install (once) the console handler: INFO lines normally; with ``-q`` only warnings
    (a run moved to a new folder, a resume across suite revisions) and errors."""
    for logger in _roots():
        logger.setLevel(logging.INFO)
        logger.propagate = False  # the root logger belongs to the user (and open_clip's chatter)
        handler = next((h for h in logger.handlers if h.get_name() == _CONSOLE_NAME), None)
        if handler is None:
            handler = TqdmHandler()
            handler.set_name(_CONSOLE_NAME)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
        handler.setLevel(logging.WARNING if quiet else logging.INFO)


@contextlib.contextmanager
def run_log(path: Path) -> Iterator[None]:
    """Everything the suite logs during the block also goes to ``path`` (a run's run.log)."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    levels = {}
    for logger in _roots():
        levels[logger.name] = logger.level
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
    try:
        yield
    finally:
        for logger in _roots():
            logger.removeHandler(handler)
            logger.setLevel(levels[logger.name])
        handler.close()


@contextlib.contextmanager
def quiet_root_logger():
    """open_clip logs to the root logger (e.g. 'no weights found' while pretraining)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)
