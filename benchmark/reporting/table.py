"""The long accuracy CSV (``accuracy_long.csv``, the source of truth of a run): its columns,
its reader, and the queries that reports, plots and the leaderboard share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from benchmark.errors import UserError
from benchmark.reporting import metrics
from benchmark.rows import OPTIONAL_COLUMNS as ROW_OPTIONAL_COLUMNS
from benchmark.rows import REQUIRED_COLUMNS

# The columns every CSV must have, and those the runner writes that older runs may lack (the
# expected calibration error, the status, the split, n: images scored); benchmark/rows.py
# holds the row's typed form and the column order.
LONG_COLUMNS = REQUIRED_COLUMNS
OPTIONAL_COLUMNS = ROW_OPTIONAL_COLUMNS
KINDS = ("head", "lp", "zs")
SPLITS = ("test", "val")


def split_rows(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split (a CSV without a ``split`` column holds test rows only).

    Every report counts split=test; validation rows (eval.splits with "val") exist to
    choose hyperparameters, and no table, plot or leaderboard may read them."""
    if "split" not in df.columns:
        return df if split == "test" else df.iloc[0:0]
    return df[df["split"].fillna("test") == split].reset_index(drop=True)


def usable_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that count for metrics: all of them, less those whose optional ``status`` is "failed"."""
    if "status" not in df.columns:
        return df
    return df[df["status"] != "failed"]


def sequence_tasks(df: pd.DataFrame) -> list[str]:
    """The trained tasks in stage order (stage 1 first), recovered from ``trained_task`` by stage.

    Raises ValueError when a stage names two tasks (e.g. two methods ran different
    sequences) or when stages 1..S are not all present.
    """
    trained = df.loc[df["stage"] >= 1, ["stage", "trained_task"]].drop_duplicates()
    tasks_by_stage = trained.groupby("stage")["trained_task"].unique()
    ambiguous = {int(stage): list(tasks) for stage, tasks in tasks_by_stage.items() if len(tasks) > 1}
    if ambiguous:
        raise ValueError(f"stages train different tasks across rows: {ambiguous}")
    stages = [int(stage) for stage in tasks_by_stage.index]
    if stages != list(range(1, len(stages) + 1)):
        raise ValueError(f"stages must run 1..S without gaps, got {stages}")
    return [str(tasks[0]) for tasks in tasks_by_stage]


def eval_only_tasks(df: pd.DataFrame) -> list[str]:
    """Evaluated tasks that no stage trains, in order of first appearance in the CSV."""
    trained = set(sequence_tasks(df))
    return [str(task) for task in pd.unique(df["eval_task"]) if task not in trained]


def num_stages(df: pd.DataFrame) -> int:
    """S, the last fine-tuning stage present in the frame (0 when only the pre-trained model ran)."""
    return int(df["stage"].max()) if len(df) else 0


def accuracy_matrix(
    df: pd.DataFrame, method: str, seed: int, kind: str, columns: Sequence[str], value: str = "accuracy"
) -> np.ndarray:
    """Accuracies of one (method, seed, kind) as a ``[S+1, len(columns)]`` array, NaN where missing.

    ``value`` names another per-row number to lay out the same way (``ece``); all NaN when
    the frame has no such column.

    S is taken from the whole frame, so a run that stopped early shows NaN rows instead of
    a shorter matrix. Raises ValueError on two rows for the same (stage, eval_task).
    """
    rows = df[(df["method"] == method) & (df["seed"] == seed) & (df["kind"] == kind)]
    duplicated = rows.duplicated(["stage", "eval_task"], keep=False)
    if duplicated.any():
        first = rows[duplicated].iloc[0]
        raise ValueError(
            f"duplicate rows for method={method!r} seed={seed} kind={kind!r} "
            f"stage={first['stage']} eval_task={first['eval_task']!r}"
        )
    matrix = np.full((num_stages(df) + 1, len(columns)), np.nan)
    column_index = {task: index for index, task in enumerate(columns)}
    rows = rows[rows["eval_task"].isin(column_index)]
    stage_rows = rows["stage"].to_numpy(int)
    task_columns = rows["eval_task"].map(column_index).to_numpy(int)
    if value in rows.columns:
        matrix[stage_rows, task_columns] = rows[value].to_numpy(float)
    return matrix


def trained_stages(df: pd.DataFrame, columns: Sequence[str]) -> list[int]:
    """For each column, the 1-based stage that trains it, or -1 for eval-only tasks."""
    stage_of = {task: stage for stage, task in enumerate(sequence_tasks(df), start=1)}
    return [stage_of.get(task, metrics.NEVER_TRAINED) for task in columns]


def methods_in_order(df: pd.DataFrame) -> list[str]:
    """Method names in order of first appearance."""
    return [str(method) for method in pd.unique(df["method"])]


def kinds_in_order(df: pd.DataFrame, method: str) -> list[str]:
    """The kinds (head, lp, zs order) that have rows for this method."""
    present = set(df.loc[df["method"] == method, "kind"])
    return [kind for kind in KINDS if kind in present]


def seeds_of(df: pd.DataFrame, method: str, kind: str) -> list[int]:
    """Sorted seeds with rows for this (method, kind)."""
    rows = df[(df["method"] == method) & (df["kind"] == kind)]
    return sorted(int(seed) for seed in pd.unique(rows["seed"]))


def read_csv_with(csv_path: Path, columns: Sequence[str]) -> pd.DataFrame:
    """A results CSV that holds ``columns``; an unreadable file or a missing column is a
    one-line UserError naming the file."""
    try:
        df = pd.read_csv(csv_path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {csv_path}: {error}") from None
    missing = [column for column in columns if column not in df.columns]
    if missing:
        raise UserError(f"{csv_path} lacks columns {missing}; expected {list(columns)}")
    return df


def load_long_csv(csv_path: Path, split: str = "test") -> pd.DataFrame:
    """Read and check the long CSV's rows of one split; every problem becomes a one-line
    UserError. Reports read test (the default); only tuning tools ask for val."""
    df = read_csv_with(csv_path, LONG_COLUMNS)
    if "split" in df.columns:
        unknown_splits = sorted({str(split) for split in df["split"].dropna()} - set(SPLITS))
        if unknown_splits:
            raise UserError(f"{csv_path} has unknown splits {unknown_splits}; valid: {list(SPLITS)}")
    df = split_rows(df, split)  # validation rows never reach a report: reports read test
    unknown_kinds = sorted({str(kind) for kind in df["kind"]} - set(KINDS))
    if unknown_kinds:
        raise UserError(f"{csv_path} has unknown kinds {unknown_kinds}; valid: {list(KINDS)}")
    for column in ("method", "eval_task"):  # names become table rows and file names: one line each
        bad = next((str(v) for v in df[column].dropna().unique() if not str(v).isprintable()), None)
        if bad is not None:
            raise UserError(f"{csv_path}: {column} {bad[:80]!r} holds a non-printable character (a newline?)")
    for column in ("seed", "stage", "accuracy"):
        if not pd.api.types.is_numeric_dtype(df[column]):
            raise UserError(f"{csv_path}: column {column!r} is not numeric")
    if (df["stage"] < 0).any():
        raise UserError(f"{csv_path}: negative stage numbers")
    usable = usable_rows(df)
    cell = ["method", "seed", "kind", "stage", "eval_task"]
    duplicated = usable[usable.duplicated(cell, keep=False)]
    if len(duplicated):
        first = ", ".join(f"{key}={value}" for key, value in duplicated.iloc[0][cell].items())
        raise UserError(f"{csv_path}: {len(duplicated)} rows measure the same cell, e.g. {first}")
    try:
        sequence = sequence_tasks(usable)
    except ValueError as error:
        raise UserError(f"{csv_path}: {error}") from None
    if not sequence:
        raise UserError(f"{csv_path} has no usable fine-tuning stage (rows with stage >= 1)")
    return df
