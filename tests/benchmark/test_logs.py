"""Progress a batch job can read (lines, not redrawn bars) and warnings shown once."""

import contextlib
import io
import os
import warnings

import pytest

from benchmark import logs
from benchmark.logs import LineProgress, progress, quiet_warnings


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_line_progress_says_count_percent_eta_and_postfix():
    out = io.StringIO()
    bar = LineProgress(400, "  stage 2 digits", "step", interval=0.0, file=out)
    bar.update(120)
    bar.set_postfix(loss="0.530")
    bar.update(0)
    bar.close()
    bar.close()  # a second close writes nothing
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("stage 2 digits: 120/400 steps, 30%, ETA ")
    assert lines[1].endswith(", loss 0.530")
    assert lines[2].startswith("stage 2 digits: 120/400 steps in ") and lines[2].endswith("loss 0.530")
    assert len(lines) == 3 and "\r" not in out.getvalue()


def test_line_progress_is_quiet_between_intervals_and_iterates():
    out = io.StringIO()
    items = list(LineProgress(None, "evaluating", "task", iterable=["a", "b", "c"], interval=3600, file=out))
    assert items == ["a", "b", "c"]
    assert out.getvalue() == "evaluating: 3/3 tasks in 0s\n"  # only the closing line


def test_progress_picks_bars_lines_or_nothing(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.delenv("LDIFS_BENCH_PROGRESS", raising=False)
    with contextlib.redirect_stderr(io.StringIO()):
        assert isinstance(progress(10, "x"), LineProgress)  # a file, not a terminal
        off = progress(10, "x", enabled=False)
        assert isinstance(off, tqdm) and off.disable and off.total == 10
        monkeypatch.setenv("LDIFS_BENCH_PROGRESS", "bars")
        assert isinstance(progress(10, "x"), tqdm)
    monkeypatch.setenv("LDIFS_BENCH_PROGRESS", "lines")
    with contextlib.redirect_stderr(FakeTerminal()):
        assert isinstance(progress(10, "x"), LineProgress)
        monkeypatch.delenv("LDIFS_BENCH_PROGRESS")
        bar = progress(10, "x")
        assert isinstance(bar, tqdm) and not bar.disable
        bar.close()


def test_warnings_show_once_and_avalanche_deprecations_not_at_all():
    err = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stderr(err):
        quiet_warnings()
        avalanche_file = os.path.join("site-packages", "avalanche", "training", "plugins", "replay.py")
        for _ in range(3):
            warnings.simplefilter("once", DeprecationWarning)  # what Avalanche's decorator does per call
            warnings.warn_explicit("Call to deprecated function update", DeprecationWarning, avalanche_file, 123)
            warnings.simplefilter("always", UserWarning)
            warnings.warn("the suite's own", UserWarning, stacklevel=1)
    text = err.getvalue()
    assert "deprecated" not in text
    assert text.count("UserWarning: the suite's own") == 1


def test_a_run_logged_to_a_file_has_no_redrawn_bars(micro_cfg, tmp_path, monkeypatch):
    """A batch job's stderr: whole lines per stage and no carriage returns (redrawn bars leave one per refresh)."""
    from benchmark.config import dump_yaml
    from run_benchmark import main

    monkeypatch.delenv("LDIFS_BENCH_PROGRESS", raising=False)
    monkeypatch.setattr(logs, "LINE_INTERVAL_S", 60.0)
    micro_cfg.methods = ["finetune", "ldifs"]
    cfg = tmp_path / "micro.yaml"
    cfg.write_text(dump_yaml(micro_cfg))
    log = tmp_path / "stderr.txt"
    with open(log, "w") as f, contextlib.redirect_stderr(f):
        assert main(["--config", str(cfg), "--name", "logged"]) == 0
    data = log.read_bytes()
    assert data.count(b"\r") == 0  # no redraws at all (the bound asked for: fewer than 50)
    text = data.decode()
    assert "stage 1 shapes: " in text and "stage 2 digits: " in text and "evaluating ldifs stage 2" in text


@pytest.mark.parametrize("seconds,text", [(5, "5s"), (70, "1m10s"), (3725, "1h02m")])
def test_durations_read_like_a_clock(seconds, text):
    assert logs._duration(seconds) == text


def test_a_once_message_is_shown_by_the_first_process_of_a_command_only(monkeypatch, tmp_path):
    """Two filters stand for two sweep workers sharing the command's folder."""
    import logging

    from benchmark.logs import ONCE_DIR_ENV, OncePerCommand, once_per_command

    def record(text: str, once: bool = True) -> logging.LogRecord:
        item = logging.LogRecord("benchmark.x", logging.WARNING, __file__, 1, text, None, None)
        item.once = once
        return item

    monkeypatch.delenv(ONCE_DIR_ENV, raising=False)
    with once_per_command():
        first, second = OncePerCommand(), OncePerCommand()
        assert first.filter(record("stage 1: capped")) and not first.filter(record("stage 1: capped"))
        assert not second.filter(record("stage 1: capped"))  # the other worker said it already
        assert second.filter(record("stage 2: capped")) and second.filter(record("plain", once=False))
    assert ONCE_DIR_ENV not in __import__("os").environ
    alone = OncePerCommand()  # outside a command's block: once per process
    assert alone.filter(record("stage 1: capped"))
