"""The short table ``run_benchmark.py`` prints at the end of a run.

Read with the csv module, not pandas: a rerun that finds its run complete prints this
table and nothing else, and must stay as quick as ``import torch`` (pandas adds a second)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

# column of the printed table -> (kind, column of summary.csv)
HEADLINE = {
    "last head acc": ("head", "last"),
    "mean dLP (untrained)": ("lp", "delta_final_untrained"),
    "mean dZS (untrained)": ("zs", "delta_final_untrained"),
}
# A class-incremental run: the protocol's Avg and Last (accuracy on all seen classes), then dLP, dZS.
HEADLINE_CIL = {
    "Avg (seen classes)": ("head", "inc_avg"),
    "Last": ("head", "inc_last"),
    "mean dLP (untrained)": ("lp", "delta_final_untrained"),
    "mean dZS (untrained)": ("zs", "delta_final_untrained"),
}


def headline(rows: list[dict[str, str]], columns: dict[str, tuple[str, str]] = HEADLINE) -> dict[str, dict[str, str]]:
    """Per method (in the order of its head rows): final head accuracy on the trained tasks
    (class-incremental, with ``HEADLINE_CIL``: Avg and Last), dLP and dZS on tasks never trained."""
    by = {(row["method"], row["kind"]): row for row in rows}
    methods = [row["method"] for row in rows if row["kind"] == "head"]
    return {
        method: {title: by.get((method, kind), {}).get(column, "") for title, (kind, column) in columns.items()}
        for method in methods
    }


def headline_columns(run_dir: Path) -> dict[str, tuple[str, str]]:
    """The columns for this run's scenario (manifest.json's ``scenario``; task-incremental when absent)."""
    try:
        scenario = json.loads((Path(run_dir) / "manifest.json").read_text(encoding="utf-8")).get("scenario")
    except (OSError, ValueError, AttributeError):
        scenario = None
    return HEADLINE_CIL if scenario == "class_incremental" else HEADLINE


def _cell(text: str) -> str:
    try:
        return f"{float(text):7.1f}"
    except ValueError:
        return f"{'NaN':>7s}"


def print_headline(run_dir: Path) -> None:
    columns = headline_columns(run_dir)
    with open(run_dir / "summary.csv", newline="", encoding="utf-8") as f:
        table = headline(list(csv.DictReader(f)), columns)
    print(f"\nresults: {run_dir}/  (report.md, accuracy_long.csv, summary.csv, plots/)")
    width = max([len("method"), *map(len, table)])
    print(f"{'method':{width}s}  " + "  ".join(columns))
    for method, values in table.items():
        cells = [f"{_cell(values[title]):>{len(title)}s}" for title in columns]
        print(f"{method:{width}s}  " + "  ".join(cells))
