"""The run folder: the names of every file a run writes, the staging folder, the lock.

One owner for the layout, as timm's checkpoint saver owns its folder: the runner, the
reports and the leaderboard ask this module for names instead of spelling them.
"""

from __future__ import annotations

import fcntl
import os
import re
from pathlib import Path
from typing import Optional

from benchmark.errors import UserError

LONG_CSV = "accuracy_long.csv"
SUMMARY_CSV = "summary.csv"
REPORT_MD = "report.md"
PLOTS_DIR = "plots"
LEADERBOARD_CSV = "leaderboard.csv"
LEADERBOARD_MD = "leaderboard.md"
LEADERBOARD_HTML = "leaderboard.html"
CONFIG_YAML = "config.yaml"
MANIFEST_JSON = "manifest.json"
RUN_LOG = "run.log"
CHECKPOINTS_DIR = "checkpoints"


def safe_name(name: str) -> str:
    """A method name made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def run_title(run_dir: Path) -> str:
    """The run's folder name; inside the runner's staging folder ``.NAME.partial``, the final NAME."""
    name = Path(run_dir).resolve().name
    staging = re.fullmatch(r"\.(.+)\.partial(-\d+)?", name)
    return staging.group(1) if staging else name


class RunLock:
    """An exclusive lock on a run folder: a second process on the same run refuses to start."""

    def __init__(self, lock_path: Path) -> None:
        self.path = lock_path
        self._fd: Optional[int] = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(
                f"run {self.path.stem.lstrip('.')!r} is in use by process {holder} "
                f"(lock {self.path}); wait for it or use another --name"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the flock; a killed process releases it too
            self.path.unlink(missing_ok=True)
