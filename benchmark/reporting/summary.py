"""The short table ``run_benchmark.py`` prints at the end of a run."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def headline(summary: pd.DataFrame) -> pd.DataFrame:
    """Per method: final head accuracy on the trained tasks, dLP and dZS on tasks never trained."""
    head = summary[summary.kind == "head"].set_index("method")
    lp = summary[summary.kind == "lp"].set_index("method")
    zs = summary[summary.kind == "zs"].set_index("method")
    out = pd.DataFrame(
        {
            "last head acc": head.get("last"),
            "mean dLP (untrained)": lp.get("delta_final_untrained"),
            "mean dZS (untrained)": zs.get("delta_final_untrained"),
        }
    )
    return out.reindex(head.index)


def print_headline(run_dir: Path) -> None:
    summary = pd.read_csv(run_dir / "summary.csv")
    table = headline(summary)
    print(f"\nresults: {run_dir}/  (report.md, accuracy_long.csv, summary.csv, plots/)")
    print(table.to_string(float_format=lambda v: f"{v:7.1f}"))
