"""docs/statistics.md's coverage table is the output of ``benchmark.reporting.coverage``, and
the ``few seeds`` thresholds follow from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from benchmark.reporting import coverage, statistics

DOC = Path(__file__).resolve().parents[2] / "docs" / "statistics.md"
BLOCK = re.compile(
    r"<!-- coverage table: python -m benchmark.reporting.coverage --reps (\d+) -->\n(.*?)<!-- end coverage table -->",
    re.S,
)


def doc_table() -> tuple[int, str]:
    match = BLOCK.search(DOC.read_text(encoding="utf-8"))
    assert match, "docs/statistics.md lost its coverage table markers"
    return int(match.group(1)), match.group(2)


def doc_cells() -> dict[tuple[str, str], list[float]]:
    cells = {}
    for line in doc_table()[1].splitlines()[2:]:
        parts = [part.strip() for part in line.strip("|").split("|")]
        cells[parts[0], parts[1]] = [float(value) for value in parts[2:]]
    return cells


def test_the_docs_name_the_default_settings_and_every_interval():
    reps, _ = doc_table()
    assert reps == coverage.DEFAULT_REPS
    labels = {label for label, _ in doc_cells()}
    assert labels == {label for label, _, _ in coverage.INTERVALS}
    assert {d for _, d in doc_cells()} == set(coverage.DISTRIBUTIONS)


def test_the_few_seeds_thresholds_follow_from_the_table():
    """A bootstrap interval is labelled below the first simulated n whose coverage for
    normal seeds reaches 90%."""
    cells = doc_cells()
    rows = {
        "iqm": "IQM: percentile bootstrap of seeds (reported)",
        "p_improve": "P(>): percentile bootstrap (reported)",
    }
    for statistic, label in rows.items():
        reached = [n for n, value in zip(coverage.SEED_COUNTS, cells[label, "normal"]) if value >= 0.90]
        assert statistics.FEW_SEEDS[statistic] == min(reached), statistic
    t_normal = cells["mean: Student t (reported)", "normal"]
    assert all(abs(value - 0.95) < 0.015 for value in t_normal)  # within Monte Carlo error of 95%


def test_a_small_simulation_is_deterministic_and_tells_the_intervals_apart():
    table = coverage.coverage_table(reps=60, seed_counts=(2,), distributions=("normal",))
    assert table == coverage.coverage_table(reps=60, seed_counts=(2,), distributions=("normal",))
    values = {line.split("|")[1].strip(): float(line.split("|")[3]) for line in table.splitlines()[2:]}
    assert values["mean: Student t (reported)"] > 0.85
    assert values["mean: stratified percentile bootstrap (before)"] < 0.75


@pytest.mark.slow
def test_the_docs_table_is_the_simulation_output():
    """The full simulation at the docs' settings (about 30 s on one CPU core)."""
    reps, table = doc_table()
    assert coverage.coverage_table(reps) == table
