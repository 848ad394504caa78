"""``feature_drift.csv``: the per-layer feature drift of a run (written by
``benchmark.evaluation.drift``), its columns, its reader and the queries its figures share.

One row per (method, seed, stage, evaluated task, tapped layer, measure), in the long format
of ``accuracy_long.csv``; ``trained_task`` is the task of the row's stage ("pretrained" at
stage 0), so the file alone says which tasks are eval-only.
"""

from __future__ import annotations

import html
from pathlib import Path

import pandas as pd

from benchmark.errors import UserError
from benchmark.reporting.table import read_csv_with
from benchmark.rundir import FEATURE_DRIFT_CSV, PLOTS_DIR

DRIFT_COLUMNS = ("method", "seed", "stage", "trained_task", "eval_task", "layer", "measure", "value")
# dist: the LDIFS distance (Mukhoti et al., TMLR 2024, Eq. 2); cka: linear CKA (Kornblith et al.,
# ICML 2019); against the pre-trained encoder, or the encoder after the previous stage.
MEASURES = ("dist_pretrained", "cka_pretrained", "dist_previous", "cka_previous")
MEASURE_NAMES = {
    "dist_pretrained": "LDIFS distance to the pre-trained encoder",
    "cka_pretrained": "linear CKA to the pre-trained encoder",
    "dist_previous": "LDIFS distance to the previous stage's encoder",
    "cka_previous": "linear CKA to the previous stage's encoder",
}


def load_drift_csv(path: Path) -> pd.DataFrame:
    """Read and check feature_drift.csv; every problem is a one-line UserError."""
    df = read_csv_with(path, DRIFT_COLUMNS)
    unknown = sorted({str(m) for m in df["measure"]} - set(MEASURES))
    if unknown:
        raise UserError(f"{path} has unknown measures {unknown}; valid: {list(MEASURES)}")
    for column in ("seed", "stage", "value"):
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise UserError(f"{path}: column {column!r} is not numeric")
    cell = ["method", "seed", "stage", "eval_task", "layer", "measure"]
    duplicated = df[df.duplicated(cell, keep=False)]
    if len(duplicated):
        first = ", ".join(f"{key}={value}" for key, value in duplicated.iloc[0][cell].items())
        raise UserError(f"{path}: {len(duplicated)} rows measure the same cell, e.g. {first}")
    for column in ("method", "trained_task", "eval_task", "layer"):
        df[column] = df[column].astype(str)
    return df


def layers_in_order(df: pd.DataFrame) -> list[str]:
    """The tapped layers, shallow to deep (the order the measurement wrote them)."""
    return [str(layer) for layer in pd.unique(df["layer"])]


def stage_tasks(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """The trained tasks in stage order, and the evaluated tasks no stage trains (eval-only)."""
    trained = df.loc[df["stage"] >= 1, ["stage", "trained_task"]].drop_duplicates("stage").sort_values("stage")
    sequence = [str(task) for task in trained["trained_task"]]
    evaluated = [str(task) for task in pd.unique(df["eval_task"])]
    return [t for t in sequence if t in evaluated], [t for t in evaluated if t not in sequence]


def drift_matrix(df: pd.DataFrame, method: str, measure: str, eval_task: str) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """``[layers, stages]`` mean and population std over seeds of one measure on one task, and the seed count."""
    rows = df[(df["method"] == method) & (df["measure"] == measure) & (df["eval_task"] == eval_task)]
    stages = range(int(df["stage"].max()) + 1) if len(df) else range(0)
    grouped = rows.groupby(["layer", "stage"])["value"]
    mean = grouped.mean().unstack("stage").reindex(index=layers_in_order(df), columns=stages)
    std = grouped.std(ddof=0).unstack("stage").reindex(index=layers_in_order(df), columns=stages)
    return mean, std, int(rows["seed"].nunique())


def drift_links_html(run_dir: Path) -> str:
    """An item of the leaderboard page's list: links to the run's feature_drift.csv and its
    figures beside the page ('' when the run has no drift table)."""
    run_dir = Path(run_dir)
    if not (run_dir / FEATURE_DRIFT_CSV).is_file():
        return ""
    figures = sorted((run_dir / PLOTS_DIR).glob("drift_*.png"), key=lambda p: (p.stem != "drift_last_stage", p.name))
    links = [f'<a href="{FEATURE_DRIFT_CSV}">{FEATURE_DRIFT_CSV}</a>']
    for figure in figures:
        words = (
            "all methods, last stage" if figure.stem == "drift_last_stage" else figure.stem.removeprefix("drift_cka_")
        )
        links.append(f'<a href="{PLOTS_DIR}/{html.escape(figure.name)}">{html.escape(words)}</a>')
    return (
        "<li><b>feature drift</b> (per layer, LDIFS distance and linear CKA to the pre-trained "
        f"encoder after every stage): {', '.join(links)}</li>"
    )
