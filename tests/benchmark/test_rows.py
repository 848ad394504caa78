"""One row type and one column tuple for the long accuracy CSV: the tracker scores rows of
that type, the loop labels them, the runner writes those columns, the reports read them."""

from __future__ import annotations

import sys
from pathlib import Path

from benchmark.reporting import table
from benchmark.rows import COLUMNS, AccuracyRow, Score, WrittenRow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
from methods_testkit import micro_setup, run  # noqa: E402


def keys(row_type: type) -> set[str]:
    return set(row_type.__required_keys__) | set(row_type.__optional_keys__)


def test_the_columns_are_the_written_rows_keys_and_the_readers_columns():
    assert set(COLUMNS) == keys(WrittenRow) and len(COLUMNS) == len(set(COLUMNS))
    assert WrittenRow.__optional_keys__ == {"status"}  # rows are complete before the runner adds it
    assert (*table.LONG_COLUMNS, *table.OPTIONAL_COLUMNS) == COLUMNS  # "split" included
    assert "split" in table.OPTIONAL_COLUMNS


def test_the_tracker_scores_and_the_loop_labels_rows_of_those_types():
    setup = micro_setup(kinds=("head", "lp", "zs"))
    result, _ = run(setup, "finetune")
    scores = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
    assert all(set(score) == keys(Score) for score in scores)
    assert len(result.rows) == 3 * 2 * 3  # stages x tasks x kinds
    assert all(set(row) == keys(AccuracyRow) for row in result.rows)
