"""Summary tables and the markdown report, drawn from ``accuracy_long.csv`` alone.

The long CSV is the source of truth; everything here can be redrawn from it with
``python -m benchmark.reporting.reports results/RUN``.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from benchmark.errors import OneLineParser, command
from benchmark.files import atomic_text
from benchmark.reporting import metrics
from benchmark.reporting.table import (
    accuracy_matrix,
    eval_only_tasks,
    kinds_in_order,
    load_long_csv,
    methods_in_order,
    seeds_of,
    sequence_tasks,
    trained_stages,
    usable_rows,
)
from benchmark.rundir import LONG_CSV, PLOTS_DIR, REPORT_MD, SUMMARY_CSV, run_title

# Metrics whose spread over seeds is reported next to the mean.
METRICS_WITH_STD = ("avg_acc_final", "last", "inc_avg", "inc_last", "delta_final_untrained")
# Every summary metric, in summary.csv's order (each reported std right after its mean).
SUMMARY_METRICS = (
    "avg_acc_final",
    "last",
    "inc_avg",
    "inc_last",
    "forgetting_if",
    "forgetting_max",
    "bwt",
    "fwt",
    "mtil_transfer",
    "mtil_avg",
    "mtil_last",
    "delta_final_untrained",
    "delta_mean_untrained",
    "ece_last",
)
# The columns shown in report.md (MTIL's Avg and Last only in summary.csv).
REPORT_COLUMNS = ("method", "kind", "n_seeds", *(m for m in SUMMARY_METRICS if m not in ("mtil_avg", "mtil_last")))


# ---------------------------------------------------------------- summary table


def seed_metrics(
    full: np.ndarray,
    num_sequence_tasks: int,
    trained_stage: Sequence[int],
    eval_only: Sequence[str],
    weights: Optional[Sequence[float]] = None,
    sequence: Sequence[str] = (),
) -> dict[str, float]:
    """All summary metrics of one seed's ``[S+1, K]`` matrix (sequence columns first);
    ``weights``: test images per sequence column (pools rows into incremental accuracy);
    ``sequence``: the sequence tasks' names, for the per-task forgetting columns."""
    R = full[:, :num_sequence_tasks]
    incremental = metrics.incremental_accuracy(R, weights)
    deltas = metrics.concept_forgetting(full)
    final_untrained = deltas[-1, num_sequence_tasks:]
    values = {
        "avg_acc_final": float(metrics.average_accuracy(R)[-1]),
        "last": metrics.last_accuracy(R),
        "inc_avg": float(np.mean(incremental)),
        "inc_last": float(incremental[-1]),
        "forgetting_if": _mean_or_nan(metrics.forgetting_initial_final(R)),
        "forgetting_max": _mean_or_nan(metrics.forgetting_max(R)),
        "bwt": metrics.backward_transfer(R),
        "fwt": metrics.forward_transfer(R),
        "mtil_transfer": metrics.mtil_transfer(R),
        "mtil_avg": metrics.mtil_avg(R),
        "mtil_last": metrics.mtil_last(R),
        "delta_final_untrained": _mean_or_nan(final_untrained),
        "delta_mean_untrained": mean_delta_over_stages(deltas, trained_stage),
    }
    for task, delta in zip(eval_only, final_untrained):
        values[f"delta_final__{task}"] = float(delta)
    for task, forgotten in zip(sequence, metrics.forgetting_initial_final(R)):
        values[f"forgetting_if__{task}"] = float(forgotten)
    return values


def sequence_weights(df: pd.DataFrame, sequence: Sequence[str]) -> Optional[list[float]]:
    """Test images per sequence task (the optional ``n`` column); None when not recorded."""
    if "n" not in df.columns or df["n"].isna().all():
        return None
    counts = df.groupby("eval_task")["n"].max()
    return [float(counts.get(task, np.nan)) for task in sequence]


def ece_last(df: pd.DataFrame, method: str, seed: int, kind: str, sequence: Sequence[str]) -> float:
    """Mean expected calibration error (percent, Guo et al. 2017) over the sequence tasks
    after the final stage; NaN for a CSV without the ``ece`` column."""
    return float(np.mean(accuracy_matrix(df, method, seed, kind, sequence, value="ece")[-1]))


def mean_delta_over_stages(deltas: np.ndarray, trained_stage: Sequence[int]) -> float:
    """Mean over stages 1..S of the per-stage mean delta on untrained tasks.

    Stages with no untrained task at all (the last stage of a run without eval-only
    tasks) have nothing to measure and are skipped, rather than turning the mean into NaN.
    """
    per_stage = metrics.mean_over_untrained(deltas, trained_stage)[1:]
    has_untrained = metrics.untrained_mask(deltas.shape[0] - 1, trained_stage)[1:].any(axis=1)
    return _mean_or_nan(per_stage[has_untrained])


def _mean_or_nan(values: np.ndarray) -> float:
    return float(np.mean(values)) if np.size(values) else float("nan")


def summary_columns(eval_only: Sequence[str], sequence: Sequence[str] = ()) -> list[str]:
    """Column order of :func:`summarise`: each reported std right after its mean, then the
    per-task columns (dLP/dZS of eval-only tasks, forgetting of each sequence task but the last)."""
    columns = ["method", "kind", "n_seeds"]
    for name in SUMMARY_METRICS:
        columns.append(name)
        if name in METRICS_WITH_STD:
            columns.append(f"{name}_std")
    return (
        columns + [f"delta_final__{task}" for task in eval_only] + [f"forgetting_if__{task}" for task in sequence[:-1]]
    )


def summarise(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, kind): every metric computed per seed, then averaged over seeds.

    Rows come in method order of first appearance, kinds in head, lp, zs order. The
    ``*_std`` columns are the population std over seeds (0 for one seed). ``delta_*``
    columns are dLP for kind lp, dZS for kind zs (NaN when there are no eval-only tasks).
    Failed rows (``status == "failed"``) are left out.
    """
    df = usable_rows(df)
    sequence, eval_only = sequence_tasks(df), eval_only_tasks(df)
    columns = sequence + eval_only
    trained_stage = trained_stages(df, columns)
    weights = sequence_weights(df, sequence)
    records = []
    for method in methods_in_order(df):
        for kind in kinds_in_order(df, method):
            seeds = seeds_of(df, method, kind)
            per_seed = pd.DataFrame(
                [
                    seed_metrics(
                        accuracy_matrix(df, method, seed, kind, columns),
                        len(sequence),
                        trained_stage,
                        eval_only,
                        weights,
                        sequence,
                    )
                    for seed in seeds
                ]
            )
            per_seed["ece_last"] = [ece_last(df, method, seed, kind, sequence) for seed in seeds]
            record = {"method": method, "kind": kind, "n_seeds": len(seeds)}
            record.update({name: float(per_seed[name].to_numpy().mean()) for name in per_seed.columns})
            record.update({f"{name}_std": float(per_seed[name].to_numpy().std()) for name in METRICS_WITH_STD})
            records.append(record)
    return pd.DataFrame(records, columns=summary_columns(eval_only, sequence))


# ---------------------------------------------------------------- markdown


def _format_cell(value: object, floatfmt: str) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if np.isnan(value) else format(value, floatfmt)
    return str(value).replace("|", "\\|")


def markdown_table(df: pd.DataFrame, floatfmt: str = ".1f") -> str:
    """A GitHub markdown table of the frame (no index); numbers right-aligned, NaN as "n/a".

    Written by hand because ``DataFrame.to_markdown`` needs the optional ``tabulate`` package.
    """
    header = "| " + " | ".join(str(column) for column in df.columns) + " |"
    align = (
        "| "
        + " | ".join("---:" if pd.api.types.is_numeric_dtype(df[column]) else "---" for column in df.columns)
        + " |"
    )
    body = [
        "| " + " | ".join(_format_cell(value, floatfmt) for value in row) + " |"
        for row in df.itertuples(index=False, name=None)
    ]
    return "\n".join([header, align, *body]) + "\n"


# ---------------------------------------------------------------- files


def report_markdown(run_dir: Path, df: pd.DataFrame, summary: pd.DataFrame, images: Sequence[Path]) -> str:
    """The text of report.md: run description, compact summary table, metric notes, figures."""
    usable = usable_rows(df)
    sequence, eval_only = sequence_tasks(usable), eval_only_tasks(usable)
    seeds = sorted(int(seed) for seed in pd.unique(usable["seed"]))
    failed = len(df) - len(usable)
    lines = [
        f"# Continual fine-tuning report: {run_title(run_dir)}",
        "",
        f"- Sequence: {' -> '.join(sequence) or '(none)'}",
        f"- Eval-only tasks (never trained, marked * in the plots): {', '.join(eval_only) or '(none)'}",
        f"- Methods: {', '.join(methods_in_order(usable))}; seeds: {', '.join(map(str, seeds))}",
        f"- Source of truth: [{LONG_CSV}]({LONG_CSV}); full table with every metric: [{SUMMARY_CSV}]({SUMMARY_CSV})",
    ]
    if failed:
        lines.append(f'- Rows with status "failed", left out of every metric: {failed}')
    lines += [
        "",
        "## Summary (mean over seeds, accuracy in percent)",
        "",
        markdown_table(summary[[column for column in REPORT_COLUMNS if column in summary.columns]]),
        "Metrics: avg_acc_final = mean accuracy over the trained tasks after the last stage; "
        "last = mean over all sequence tasks after the last stage (GEM ACC, MTIL Last); "
        "inc_last / inc_avg = accuracy on the test images of everything trained so far after the last stage "
        "/ averaged over stages (class-incremental: over all seen classes without task identity, "
        "iCaRL's and ZSCL's Last and Avg); "
        "forgetting_if = accuracy just after training minus final (Avalanche); "
        "forgetting_max = best accuracy from training to the stage before last, minus final (RWalk); "
        "bwt / fwt = backward / forward transfer (GEM); mtil_transfer = accuracy on tasks not yet "
        "trained, averaged per task over the stages before its own, then over tasks (ZSCL's MTIL Transfer); delta_* = accuracy minus the pre-trained model's on tasks not "
        "trained (dLP for lp, dZS for zs; negative = concept forgotten): at the final stage over the "
        "eval-only tasks, and averaged over stages 1..T over the tasks untrained at each stage; "
        "ece_last = expected calibration error (15 bins, Guo et al. 2017, percent) after the last stage, "
        "mean over the sequence tasks.",
        "",
        "## Figures",
        "",
    ]
    for image in images:
        lines += [f"![{image.stem}]({PLOTS_DIR}/{image.name})", ""]
    return "\n".join(lines)


def write_report(run_dir: Path) -> None:
    """Redraw summary.csv, plots/ and report.md of a run from its accuracy_long.csv alone."""
    # Imported here so that computing tables never pays for (or depends on) matplotlib.
    from benchmark.reporting import plots
    from benchmark.reporting.drift_plots import plot_feature_drift

    run_dir = Path(run_dir)
    df = load_long_csv(run_dir / LONG_CSV)
    summary = summarise(df)
    atomic_text(run_dir / SUMMARY_CSV, summary.to_csv(index=False))
    plot_dir = run_dir / PLOTS_DIR
    images = [
        *plots.plot_accuracy_heatmaps(df, plot_dir),
        *plots.plot_concept_forgetting_heatmaps(df, plot_dir),
        *plots.plot_forgetting_curve(df, plot_dir),
        *plots.plot_forgetting_panels(df, plot_dir),
        *plot_feature_drift(run_dir),  # feature_drift.csv, when the run measured it
    ]
    pngs = [image for image in images if image.suffix == ".png"]
    atomic_text(run_dir / REPORT_MD, report_markdown(run_dir, df, summary, pngs))


@command
def main(argv: list[str]) -> int:
    """``python -m benchmark.reporting.reports RUN_DIR``: redraw a run's tables and figures; 2 on a bad CSV."""
    parser = OneLineParser(prog="python -m benchmark.reporting.reports", description=main.__doc__)
    parser.add_argument("run_dir", type=Path, help=f"folder holding {LONG_CSV}")
    args = parser.parse_args(argv)
    write_report(args.run_dir)
    print(f"wrote {args.run_dir / REPORT_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())  # type: ignore[call-arg]
