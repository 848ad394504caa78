"""``results/index.csv``: one row per run folder the command line made (folder, name,
sequence, methods, seeds, status, start, wall time, command), and ``results/latest``, a link
to the run finished last, so that a results folder of hash-suffixed names stays findable.

Several runs may share one results folder at once (sweep workers, two terminals): the
index is rewritten whole, atomically, under an exclusive ``flock`` on the results folder
itself (no lock file to leave behind). It is a convenience: a failure to write it is a
warning, never a failed run.
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Optional

from benchmark.files import atomic_text

log = logging.getLogger(__name__)

INDEX_CSV = "index.csv"
LATEST = "latest"
COLUMNS = ["folder", "name", "sequence", "methods", "seeds", "status", "started", "wall_seconds", "command"]


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive flock on the folder itself (released on close, or when the process dies)."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def read_index(results_dir: Path) -> list[dict[str, str]]:
    """The rows of ``results_dir/index.csv`` ([] when there is none or it cannot be read)."""
    try:
        with open(Path(results_dir) / INDEX_CSV, newline="", encoding="utf-8") as f:
            return [row for row in csv.DictReader(f) if row.get("folder")]
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def record_run(results_dir: Path, row: dict[str, Any], latest: bool = False) -> None:
    """Add or update (by ``folder``) the run's row; ``latest``: point ``results/latest`` at it."""
    _update(Path(results_dir), str(row["folder"]), {column: _text(row.get(column, "")) for column in COLUMNS}, latest)


def forget_run(results_dir: Path, folder: str) -> None:
    """Drop the row of a run that left no trace (refused bad input): an index of nothing is removed."""
    _update(Path(results_dir), folder, None, latest=False)


def _update(results_dir: Path, folder: str, row: Optional[dict[str, str]], latest: bool) -> None:
    try:
        with _locked(results_dir):
            rows = [r for r in read_index(results_dir) if r["folder"] != folder]
            rows += [row] if row is not None else []
            if not rows:
                (results_dir / INDEX_CSV).unlink(missing_ok=True)
                return
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            atomic_text(results_dir / INDEX_CSV, buffer.getvalue())
            if latest:
                _link_latest(results_dir, folder)
    except OSError as e:
        log.warning(f"warning: could not update {results_dir / INDEX_CSV}: {e.strerror or e}")


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return " ".join(map(str, value))
    return "" if value is None else str(value)


def _link_latest(results_dir: Path, folder: str) -> None:
    """``results/latest`` -> ``folder`` (relative), replaced atomically; a ``latest`` that is
    not a link (someone's folder or file) is left alone."""
    link = results_dir / LATEST
    if os.path.lexists(link) and not link.is_symlink():
        log.warning(f"warning: {link} is not a link; not pointing it at the latest run")
        return
    temporary = results_dir / f".{LATEST}.{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()
    os.symlink(folder, temporary)
    os.replace(temporary, link)
