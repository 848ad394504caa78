"""The embedded default's headline criterion: does LDIFS keep fine-tuning's accuracy on the
trained tasks while forgetting less of the tasks it never trains on?

Per (method, seed), from a run's test rows (head and lp kinds):
- ``last``: mean head accuracy over the trained tasks in the final row (R[S, j]);
- ``diagonal``: mean over the trained tasks of the head accuracy just after their own
  stage (R[j, j]);
- ``dlp``: mean over the eval-only tasks of the final linear-probe accuracy minus the
  pre-trained one (Mukhoti et al., TMLR 2024: concept forgetting, negative = forgotten).

Across seeds: mean and population std; ``recovered`` is the share of fine-tuning's dLP loss
that a method avoids, (dLP_ft - dLP_m) / dLP_ft, on the seed means.

    python -m benchmark.reporting.criterion RUN_DIR [RUN_DIR ...] [--baseline finetune]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.reporting.table import (
    accuracy_matrix,
    eval_only_tasks,
    load_long_csv,
    methods_in_order,
    seeds_of,
    sequence_tasks,
    usable_rows,
)

PER_SEED = ("last", "diagonal", "dlp")


def seed_numbers(df: pd.DataFrame, method: str, seed: int) -> dict[str, float]:
    """``last``, ``diagonal`` and ``dlp`` of one (method, seed); NaN where a kind is missing."""
    trained, eval_only = sequence_tasks(df), eval_only_tasks(df)
    head = accuracy_matrix(df, method, seed, "head", trained)  # [S+1, T]
    lp = accuracy_matrix(df, method, seed, "lp", eval_only)  # [S+1, E]
    diagonal = [head[j + 1, j] for j in range(len(trained))]
    return {
        "last": float(np.mean(head[-1])),
        "diagonal": float(np.mean(diagonal)),
        "dlp": float(np.mean(lp[-1] - lp[0])) if eval_only else float("nan"),
    }


def criterion_table(df: pd.DataFrame, baseline: str = "finetune") -> pd.DataFrame:
    """One row per method: mean and population std over seeds of each number, the number of
    seeds, the gaps to ``baseline`` (baseline minus method) and the dLP share recovered."""
    df = usable_rows(df)
    rows = []
    for method in methods_in_order(df):
        seeds = seeds_of(df, method, "head")
        if not seeds:
            continue
        per_seed = pd.DataFrame([seed_numbers(df, method, s) for s in seeds])
        row = {"method": method, "seeds": len(seeds)}
        for key in PER_SEED:
            row[key] = per_seed[key].mean()
            row[f"{key}_std"] = per_seed[key].std(ddof=0) if len(seeds) > 1 else float("nan")
        rows.append(row)
    table = pd.DataFrame(rows)
    if table.empty or baseline not in set(table["method"]):
        return table
    base = table.set_index("method").loc[baseline]
    table["last_gap"] = base["last"] - table["last"]
    table["diagonal_gap"] = base["diagonal"] - table["diagonal"]
    table["recovered"] = (base["dlp"] - table["dlp"]) / base["dlp"] if base["dlp"] < 0 else float("nan")
    return table


def load_runs(run_dirs: list[Path]) -> pd.DataFrame:
    """The test rows of several runs' ``accuracy_long.csv``, concatenated."""
    frames = []
    for run_dir in run_dirs:
        csv = run_dir / "accuracy_long.csv"
        if not csv.is_file():
            raise UserError(f"{run_dir}: no accuracy_long.csv (not a finished run folder)")
        frames.append(load_long_csv(csv))
    return pd.concat(frames, ignore_index=True)


def render(table: pd.DataFrame) -> str:
    """A markdown table of ``criterion_table``'s rows."""
    lines = [
        "| method | seeds | last head acc | just trained (diagonal) | mean dLP | gap last / diagonal | dLP recovered |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.to_dict("records"):
        cells = [
            f"{r[k]:.1f} ± {r[f'{k}_std']:.1f}" if r[f"{k}_std"] == r[f"{k}_std"] else f"{r[k]:.1f}" for k in PER_SEED
        ]
        gaps = f"{r.get('last_gap', float('nan')):.1f} / {r.get('diagonal_gap', float('nan')):.1f}"
        recovered = r.get("recovered", float("nan"))
        share = f"{100 * recovered:.0f}%" if recovered == recovered and r.get("last_gap") != 0 else ""
        lines.append(f"| {r['method']} | {r['seeds']} | {' | '.join(cells)} | {gaps} | {share} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run folders (their accuracy_long.csv are pooled)")
    p.add_argument("--baseline", default="finetune", help="the method gaps and recovery are measured against")
    args = p.parse_args(argv)
    try:
        print(render(criterion_table(load_runs(args.runs), args.baseline)))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
