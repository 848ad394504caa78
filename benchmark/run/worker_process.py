"""What every local worker process of the suite does first (a sweep's cells, a run's pairs)."""

from __future__ import annotations

import logging
import os
import time

from benchmark.logs import quiet_warnings


def quiet_libraries() -> None:
    """In a fresh worker, the library noise cli.main silences in the parent."""
    quiet_warnings()
    logging.getLogger().setLevel(logging.ERROR)


def exit_with_parent(parent: int, every_s: float = 1.0) -> None:
    """A worker whose parent (the sweep, or the run sharing its pairs) was killed (SIGTERM,
    SIGKILL, a job's end) would otherwise run on, and keep its GPU, as an orphan; its cell or
    pair resumes from its last stage checkpoint when the command is run again."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)
