"""Logging for the suite: standard module loggers under three package roots, one console
handler (its level set by ``-q``), one ``run.log`` file handler per run; progress that suits
both a terminal (tqdm bars) and a batch job's log file (a plain line now and then); warnings
shown once.

Modules log with ``logging.getLogger(__name__)``; nothing is printed through ad-hoc calls.
The console handler writes through ``tqdm.write`` so that lines land between progress bars
instead of through them.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Optional, TextIO

from tqdm.auto import tqdm

ROOTS = ("benchmark", "methods", "tasks")  # the suite's packages: every module logger is under one
_CONSOLE_NAME = "ldifs-bench-console"
LINE_INTERVAL_S = 60.0  # without a terminal: one progress line per this many seconds within a bar


class TqdmHandler(logging.Handler):
    """A console handler that prints between tqdm bars (stderr)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)  # stdout stays for results
        except Exception:  # noqa: BLE001  (logging must never raise into the run)
            self.handleError(record)


def _roots() -> list[logging.Logger]:
    return [logging.getLogger(name) for name in ROOTS]


# A folder shared by every process of one command (a sweep's workers inherit it): a message
# logged with ``extra={"once": True}`` or a warning is shown by the first process only.
ONCE_DIR_ENV = "LDIFS_BENCH_ONCE_DIR"


def first_in_command(text: str) -> bool:
    """True the first time any process of this command asks about ``text`` (always True
    outside :func:`once_per_command`): an exclusively created file per message."""
    folder = os.environ.get(ONCE_DIR_ENV)
    if not folder:
        return True
    path = Path(folder) / hashlib.sha256(text.encode()).hexdigest()[:20]
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    except OSError:
        return True  # cannot tell: better said twice than never
    return True


@contextlib.contextmanager
def once_per_command() -> Iterator[None]:
    """Messages marked once (and warnings) are shown once by all the processes this block starts."""
    if os.environ.get(ONCE_DIR_ENV):
        yield
        return
    with tempfile.TemporaryDirectory(prefix="ldifs-bench-once-") as folder:
        os.environ[ONCE_DIR_ENV] = folder
        try:
            yield
        finally:
            os.environ.pop(ONCE_DIR_ENV, None)


class OncePerCommand(logging.Filter):
    """Console filter: a record logged with ``extra={"once": True}`` is shown once per command
    (the warm-up cap of every stage of every cell of a sweep: one line each); run.log keeps all."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "once", False):
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return first_in_command(text)


ONCE_FILTER = OncePerCommand()


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
            handler.addFilter(ONCE_FILTER)
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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


class LineProgress:
    """The part of tqdm's interface the suite uses (update, set_postfix, close, total,
    iteration), written as whole lines for logs that are files, not terminals: one line
    every ``interval`` seconds and one when the bar closes, e.g.
    ``stage 2 digits: 120/400 steps, 30%, ETA 1m10s, loss 0.530``. A redrawn bar leaves
    one carriage-return-separated fragment per refresh in such a file."""

    def __init__(
        self,
        total: Optional[int],
        desc: str,
        unit: str = "step",
        iterable: Optional[Iterable] = None,
        interval: Optional[float] = None,
        file: Optional[TextIO] = None,
    ) -> None:
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)  # type: ignore[arg-type]
        self.desc, self.unit, self.n = desc.strip(), unit, 0
        self.interval = LINE_INTERVAL_S if interval is None else interval
        self.file = file
        self.postfix: dict[str, Any] = {}
        self.start = self._last = time.monotonic()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable or ():
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            self._write(self._line(now))

    def set_postfix(self, **kwargs: Any) -> None:
        self.postfix = kwargs

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._write(self._line(time.monotonic(), final=True))

    def _line(self, now: float, final: bool = False) -> str:
        elapsed = now - self.start
        done = f"{self.n}/{self.total} {self.unit}s" if self.total else f"{self.n} {self.unit}s"
        if final:
            parts = [f"{done} in {_duration(elapsed)}"]
        else:
            parts = [done]
            if self.total and self.n:
                parts += [
                    f"{100 * self.n / self.total:.0f}%",
                    f"ETA {_duration(elapsed / self.n * (self.total - self.n))}",
                ]
        parts += [f"{k} {v}" for k, v in self.postfix.items()]
        return f"{self.desc}: {', '.join(parts)}"

    def _write(self, line: str) -> None:
        print(line, file=self.file or sys.stderr, flush=True)


def progress(
    total: Optional[int] = None, desc: str = "", enabled: bool = True, unit: str = "step", iterable=None, **tqdm_kw
):
    """The suite's one progress factory: a tqdm bar on a terminal; whole lines now and then
    (``LineProgress``) when stderr is a file or pipe (batch jobs, CI); nothing when
    ``enabled`` is False (``-q``). ``LDIFS_BENCH_PROGRESS=bars|lines`` forces either."""
    from tqdm.auto import tqdm

    if not enabled:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=True, **tqdm_kw)
    forced = os.environ.get("LDIFS_BENCH_PROGRESS", "")
    terminal = sys.stderr.isatty() if hasattr(sys.stderr, "isatty") else False
    if forced == "bars" or (terminal and forced != "lines"):
        return tqdm(iterable, total=total, desc=desc, unit=unit, **tqdm_kw)
    return LineProgress(total, desc, unit, iterable)


def quiet_warnings() -> None:
    """Warnings in one place: those from third-party internals the user cannot act on are
    ignored, and every other one is shown once per process.

    Avalanche 0.6's deprecation decorator calls ``warnings.simplefilter("once")`` before each
    warning, which both overrides an "ignore" filter and, by resetting the registries, makes
    "once" mean "every call" (its replay plugin warned on every stage): so the filtering is
    done where warnings are shown, not only in the filter list.
    """
    warnings.filterwarnings("ignore", module="avalanche|qpsolvers|open_clip")
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # Avalanche's own, not the user's
    if getattr(warnings.showwarning, "shows_once", False):
        return
    seen: set[tuple[type, str]] = set()

    def show_once(message, category, filename, lineno, file=None, line=None) -> None:
        if issubclass(category, DeprecationWarning) and f"{os.sep}avalanche{os.sep}" in str(filename):
            return
        if f"{os.sep}qpsolvers{os.sep}" in str(filename):  # "no QP solver found": only GEM (not registered) needs one
            return
        key = (category, str(message))
        if key in seen:
            return
        seen.add(key)
        if not first_in_command(f"{category.__name__}: {message}"):  # a sweep worker: said by another
            return
        out = file or sys.stderr
        with contextlib.suppress(OSError, ValueError):  # a closed stream: nothing to warn on
            out.write(warnings.formatwarning(message, category, filename, lineno, line))

    show_once.shows_once = True  # type: ignore[attr-defined]
    warnings.showwarning = show_once
