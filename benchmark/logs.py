"""Logging for the suite: one logger tree, quiet third-party loggers."""

from __future__ import annotations

import contextlib
import logging


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
