"""``results/index.csv``: one row per run folder the command line made (folder, name,
sequence, methods, seeds, status, start, wall time, command), and ``results/latest``, a link
to the run finished last, so that a results folder of hash-suffixed names stays findable.

Several runs may share one results folder at once (sweep workers, two terminals): the
index is rewritten whole, atomically, under an exclusive ``flock`` on the results folder
itself (no lock file to leave behind). It is a convenience: a failure to write it is a
warning, never a failed run. It keeps history: an index that cannot be read (a non-UTF-8
byte, binary, not CSV) is moved aside to ``index.csv.damaged-<time>`` with a warning, never
rewritten from nothing; an ``index.csv`` that is a link is neither read nor replaced.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import os
from pathlib import Path
from typing import Any, Optional

from benchmark.files import atomic_text, flocked, move_aside

log = logging.getLogger(__name__)

INDEX_CSV = "index.csv"
LATEST = "latest"
COLUMNS = ["folder", "name", "sequence", "methods", "seeds", "status", "started", "wall_seconds", "command"]


class DamagedIndex(Exception):
    """index.csv is there but cannot be read as the index (its bytes are kept: move_aside)."""


def read_index(results_dir: Path) -> list[dict[str, str]]:
    """The rows of ``results_dir/index.csv`` ([] when there is none, it is damaged or a link)."""
    try:
        return _rows(Path(results_dir) / INDEX_CSV)
    except (OSError, DamagedIndex):
        return []


def _rows(path: Path) -> list[dict[str, str]]:
    """The index's rows; DamagedIndex when it is not a UTF-8 CSV with a folder column."""
    if path.is_symlink():
        raise OSError(f"{path} is a symbolic link, which the suite never follows")
    if not path.exists():
        return []
    data = path.read_bytes()
    try:
        if b"\0" in data:
            raise UnicodeError
        text = data.decode("utf-8")
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except (UnicodeError, csv.Error):
        raise DamagedIndex("not a UTF-8 CSV file") from None
    if text.strip() and "folder" not in (reader.fieldnames or []):
        raise DamagedIndex("no folder column")
    return [row for row in rows if row.get("folder")]


def record_run(results_dir: Path, row: dict[str, Any], latest: bool = False) -> None:
    """Add or update (by ``folder``) the run's row; ``latest``: point ``results/latest`` at it."""
    _update(Path(results_dir), str(row["folder"]), {column: _text(row.get(column, "")) for column in COLUMNS}, latest)


def forget_run(results_dir: Path, folder: str) -> None:
    """Drop the row of a run that left no trace (refused bad input): an index of nothing is removed."""
    _update(Path(results_dir), folder, None, latest=False)


def _update(results_dir: Path, folder: str, row: Optional[dict[str, str]], latest: bool) -> None:
    index = results_dir / INDEX_CSV
    try:
        with flocked(results_dir, create=False, follow=True):  # the folder itself: no lock file left
            if index.is_symlink():  # someone else's file behind it: neither read nor replaced
                log.warning(f"warning: {index} is a symbolic link; not reading or updating it")
            else:
                _rewrite(index, folder, row)
            if latest:
                _link_latest(results_dir, folder)
    except OSError as e:
        log.warning(f"warning: could not update {index}: {e.strerror or e}")


def _rewrite(index: Path, folder: str, row: Optional[dict[str, str]]) -> None:
    """The index with ``folder``'s row replaced by ``row`` (dropped when None), under the lock."""
    try:
        earlier = _rows(index)
    except DamagedIndex as e:  # its history is kept beside it; the new index starts now
        log.warning(f"warning: {index} cannot be read ({e}); moved to {move_aside(index)}, a new index started")
        earlier = []
    rows = [r for r in earlier if r["folder"] != folder] + ([row] if row is not None else [])
    if not rows:
        index.unlink(missing_ok=True)
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_text(index, buffer.getvalue())


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
