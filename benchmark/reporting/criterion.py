"""The embedded default's headline criterion: does LDIFS keep fine-tuning's accuracy on the
trained tasks while forgetting less of the tasks it never trains on?

Per (method, seed), from a run's rows of one split (head and lp kinds):
- ``last``: mean head accuracy over the trained tasks in the final row (R[S, j]);
- ``diagonal``: mean over the trained tasks of the head accuracy just after their own
  stage (R[j, j]);
- ``dlp``: mean over the eval-only tasks of the final linear-probe accuracy minus the
  pre-trained one (Mukhoti et al., TMLR 2024: concept forgetting, negative = forgotten).

Across seeds: mean and population std; ``recovered`` is the share of the baseline's dLP loss
that a method avoids, (dLP_base - dLP_m) / dLP_base, on the seed means. The goal the
embedded default is tuned for (docs/embedded_default.md): both gaps to fine-tuning at most
1.5 points and at least 55% recovered.

In a sweep's merged rows, settings are labelled (``ldifs[train.lr=0.002,ldifs.alpha=150]``);
each is compared with the baseline's setting that shares its non-method keys
(``finetune[train.lr=0.002]``), so one table scores a whole grid. Tuning reads ``--split val``.

    python -m benchmark.reporting.criterion RUN_DIR [RUN_DIR ...] [--split val] [--baseline finetune]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from benchmark.config import Range, check_flags
from benchmark.errors import OneLineParser, UserError, choices_error, command
from benchmark.reporting.table import (
    SPLITS,
    accuracy_matrix,
    eval_only_tasks,
    load_long_csv,
    methods_in_order,
    seeds_of,
    sequence_tasks,
    split_rows,
    usable_rows,
)

PER_SEED = ("last", "diagonal", "dlp")


@dataclass(frozen=True)
class Goal:
    """The headline's thresholds: gaps in accuracy points, recovered as a share."""

    max_last_gap: float = 1.5
    max_diagonal_gap: float = 1.5
    min_recovered: float = 0.55

    def margin(self, last_gap: float, diagonal_gap: float, recovered: float) -> float:
        """The smallest distance to a threshold, in points (recovery in percentage points):
        positive when the goal is met, and how far from failing; NaN when a number is missing."""
        margins = (
            self.max_last_gap - last_gap,
            self.max_diagonal_gap - diagonal_gap,
            100 * (recovered - self.min_recovered),
        )
        return float("nan") if any(m != m for m in margins) else min(margins)

    def met(self, last_gap: float, diagonal_gap: float, recovered: float) -> bool:
        return self.margin(last_gap, diagonal_gap, recovered) >= 0


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


def parse_label(method: str) -> tuple[str, dict[str, str]]:
    """``ldifs[train.lr=0.002,ldifs.alpha=150]`` -> ("ldifs", {"train.lr": "0.002", "ldifs.alpha": "150"})."""
    spec, _, rest = method.partition("[")
    items = [item.split("=", 1) for item in rest.rstrip("]").split(",") if "=" in item]
    return spec, {key: value for key, value in items}


def shared_setting(method: str) -> dict[str, str]:
    """The keys of a label that are not the method's own hyperparameters (``train.*``, ...)."""
    spec, items = parse_label(method)
    own = set(spec.split("+"))
    return {key: value for key, value in items.items() if "." in key and key.split(".")[0] not in own}


def paired_baseline(method: str, baseline: str, methods: list[str]) -> str | None:
    """The baseline's label that ran with ``method``'s shared setting (None when absent)."""
    wanted = shared_setting(method)
    for candidate in methods:
        spec, items = parse_label(candidate)
        if spec == baseline and items == wanted:
            return candidate
    return None


def _seed_summary(df: pd.DataFrame, method: str) -> dict:
    seeds = seeds_of(df, method, "head")
    per_seed = pd.DataFrame([seed_numbers(df, method, s) for s in seeds])
    row = {"method": method, "seeds": len(seeds)}
    for key in PER_SEED:
        row[key] = per_seed[key].mean()
        row[f"{key}_std"] = per_seed[key].std(ddof=0) if len(seeds) > 1 else float("nan")
    return row


def criterion_table(
    df: pd.DataFrame, baseline: str = "finetune", split: str = "test", goal: Goal = Goal()
) -> pd.DataFrame:
    """One row per method (or labelled setting): mean and population std over seeds of each
    number, the number of seeds, the baseline it is paired with, the gaps to it (baseline
    minus method), the dLP share recovered, whether ``goal`` is met and by what margin."""
    df = usable_rows(split_rows(df, split))
    methods = [m for m in methods_in_order(df) if seeds_of(df, m, "head")]
    methods.sort(key=lambda m: parse_label(m)[0] != baseline)  # the baseline's rows first, else as they came
    table = pd.DataFrame([_seed_summary(df, m) for m in methods])
    if table.empty:
        return table
    by_method = table.set_index("method")
    paired = [None if parse_label(m)[0] == baseline else paired_baseline(m, baseline, methods) for m in methods]
    table["baseline"] = paired
    for key, gap in (("last", "last_gap"), ("diagonal", "diagonal_gap")):
        table[gap] = [by_method.loc[b, key] - by_method.loc[m, key] if b else np.nan for m, b in zip(methods, paired)]
    table["recovered"] = [
        (by_method.loc[b, "dlp"] - by_method.loc[m, "dlp"]) / by_method.loc[b, "dlp"]
        if b and by_method.loc[b, "dlp"] < 0
        else np.nan
        for m, b in zip(methods, paired)
    ]
    table["margin"] = [goal.margin(r.last_gap, r.diagonal_gap, r.recovered) for r in table.itertuples()]
    met = [goal.met(r.last_gap, r.diagonal_gap, r.recovered) if b else None for r, b in zip(table.itertuples(), paired)]
    table["goal_met"] = pd.Series(met, dtype=object)  # None for rows without a baseline
    return table


def load_runs(run_dirs: list[Path], split: str = "test") -> pd.DataFrame:
    """The rows of one split of several runs' ``accuracy_long.csv``, concatenated."""
    frames = []
    for run_dir in run_dirs:
        csv = run_dir / "accuracy_long.csv"
        if not csv.is_file():
            raise UserError(f"{run_dir}: no accuracy_long.csv (not a finished run folder)")
        _check_split(csv, split)
        frames.append(load_long_csv(csv, split))
    return pd.concat(frames, ignore_index=True)


def _check_split(csv: Path, split: str) -> None:
    """A run that scored no ``split`` rows says so (eval.splits), not a later, stranger error."""
    try:
        scored = set(pd.read_csv(csv, usecols=lambda column: column == "split")["split"].dropna().astype(str))
    except (OSError, ValueError, KeyError, pd.errors.ParserError):  # load_long_csv names what is wrong
        return
    scored = scored or {"test"}  # runs from before the column scored test only
    if split not in scored:
        raise UserError(
            f"{csv.parent} has no {split} rows (it scored {', '.join(sorted(scored))}); "
            f"a run scores {split} with eval.splits=[test, {split}]"
        )


def check_poolable(run_dirs: list[Path]) -> None:
    """Several runs are pooled only as the leaderboard merges them: each given once, same
    sequence and settings, no (method, seed) twice (leaderboard_merge.check_mergeable)."""
    resolved = [Path(run_dir).resolve() for run_dir in run_dirs]
    repeated = next((path for index, path in enumerate(resolved) if path in resolved[:index]), None)
    if repeated:
        raise UserError(f"run {repeated} is given twice; give each run once")
    if len(run_dirs) < 2:
        return
    from benchmark.reporting.leaderboard_merge import check_mergeable, load_run

    try:
        check_mergeable([load_run(run_dir) for run_dir in run_dirs])
    except UserError as e:
        raise UserError(str(e).replace("cannot merge", "cannot pool", 1)) from None


def check_baseline(df: pd.DataFrame, baseline: str) -> None:
    """``--baseline`` must be a method of the runs (a setting's label counts by its method)."""
    methods = sorted({parse_label(str(m))[0] for m in df["method"].unique()})
    if baseline not in methods:
        raise choices_error("--baseline", baseline, methods)


def _cell(text: object) -> str:
    """A table cell: control characters escaped and pipes quoted, so one row stays one row."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text))
    return text.replace("|", "\\|")


def render(table: pd.DataFrame, goal: Goal = Goal()) -> str:
    """A markdown table of ``criterion_table``'s rows."""
    lines = [
        "| method | seeds | last head acc | just trained (diagonal) | mean dLP | gap last / diagonal | dLP recovered | goal met (margin) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in table.to_dict("records"):
        cells = [
            f"{r[k]:.1f} ± {r[f'{k}_std']:.1f}" if r[f"{k}_std"] == r[f"{k}_std"] else f"{r[k]:.1f}" for k in PER_SEED
        ]
        last_gap = r.get("last_gap", float("nan"))
        paired = last_gap == last_gap  # NaN for the baseline's own rows and unpaired settings
        gaps = f"{last_gap:.1f} / {r['diagonal_gap']:.1f}" if paired else ""
        recovered = r.get("recovered", float("nan"))
        share = f"{100 * recovered:.0f}%" if paired and recovered == recovered else ""
        met = {True: "yes", False: "no"}.get(r.get("goal_met"), "") if paired else ""
        margin = r.get("margin", float("nan"))
        met += f" ({margin:+.1f})" if met and margin == margin else ""
        lines.append(f"| {_cell(r['method'])} | {r['seeds']} | {' | '.join(cells)} | {gaps} | {share} | {met} |")
    goal_line = (
        f"goal: gaps <= {goal.max_last_gap:g} / {goal.max_diagonal_gap:g} points, "
        f"recovered >= {100 * goal.min_recovered:.0f}%; margin: the smallest distance to one of them, "
        "in points (recovery in percentage points)"
    )
    return "\n".join([*lines, "", goal_line])


@dataclass
class Flags:
    """The numeric and choice flags, checked as config keys are (benchmark.config.check_flags)."""

    split: Literal[SPLITS] = "test"  # type: ignore[valid-type]
    max_gap: Annotated[float, Range(low=0)] = Goal.max_last_gap
    min_recovered: Annotated[float, Range(low=0, high=1)] = Goal.min_recovered


@command
def main(argv: list[str]) -> int:
    p = OneLineParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run or sweep folders (their accuracy_long.csv are pooled)")
    p.add_argument("--baseline", default="finetune", help="the method gaps and recovery are measured against")
    p.add_argument("--split", default="test", help=f"which rows are scored: {', '.join(SPLITS)} (tune on val)")
    p.add_argument("--max-gap", type=float, default=Goal.max_last_gap, help="largest gap to the baseline, points")
    p.add_argument("--min-recovered", type=float, default=Goal.min_recovered, help="smallest dLP share recovered")
    args = p.parse_args(argv)
    check_flags(args, Flags)
    goal = Goal(args.max_gap, args.max_gap, args.min_recovered)
    check_poolable(args.runs)
    df = load_runs(args.runs, args.split)
    check_baseline(df, args.baseline)
    table = criterion_table(df, args.baseline, args.split, goal)
    if table.empty:
        raise UserError(f"no {args.split} rows with head accuracies in {', '.join(map(str, args.runs))}")
    print(render(table, goal))
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
