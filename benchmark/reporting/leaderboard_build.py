"""Building the leaderboard: one row per method from the long CSV, with ranks, spread marks,
bootstrap confidence intervals and the paired comparison with a baseline (pure tables: no
file is written here; ``leaderboard_render`` writes them, ``leaderboard_merge`` pools runs)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from benchmark.errors import UserError, choices_error
from benchmark.reporting import metrics, reports, statistics, table
from benchmark.rundir import MANIFEST_JSON

BEST, OVERLAPS, BELOW = "best", "≈", "<"
ONE_SEED, MISSING = "n/a (1 seed)", "n/a"
# HTML sort keys of the marks, best first; missing ("") always sorts last.
MARK_SORT_KEYS = {BEST: "0", OVERLAPS: "1", BELOW: "2", ONE_SEED: "3", MISSING: ""}


@dataclass(frozen=True)
class BoardMetric:
    """A leaderboard metric: which summary row (kind) and column it comes from, and its columns here."""

    column: str  # mean over seeds; the std is ``<column>_std``
    kind: str  # the summarise() row it is read from
    summary_column: str
    mark_column: str  # spread mark against the best method
    rank_column: Optional[str]  # None: shown, not ranked
    label: str  # header in the markdown and HTML tables
    # The tasks it averages: "trained" (final accuracy on the sequence's tasks) or
    # "eval_only" (final minus pre-trained accuracy on the tasks never trained).
    over: str = "trained"


BOARD_METRICS = (
    BoardMetric("last_head_acc", "head", "last", "acc_vs_best", "rank_acc", "last head acc"),
    BoardMetric("dlp", "lp", "delta_final_untrained", "dlp_vs_best", "rank_dlp", "dLP", "eval_only"),
    BoardMetric("dzs", "zs", "delta_final_untrained", "dzs_vs_best", None, "dZS", "eval_only"),
)
DEFAULT_BASELINE = "finetune"  # what the paired comparison compares with, when present
# Per metric column c: its CI, IQM with CI, and the comparison with the baseline.
STAT_SUFFIXES = (
    "ci_low",
    "ci_high",
    "iqm",
    "iqm_ci_low",
    "iqm_ci_high",
    "diff",
    "diff_ci_low",
    "diff_ci_high",
    "p_improve",
    "p_improve_ci_low",
    "p_improve_ci_high",
)


# ---------------------------------------------------------------- building the table


def build_leaderboard(
    df_long: pd.DataFrame,
    failed_runs: Iterable[tuple[str, int]] = (),
    hparams: Optional[dict[str, Any]] = None,
    hparams_labels: Optional[dict[str, str]] = None,
    baseline: Optional[str] = None,
) -> pd.DataFrame:
    """One row per method: mean and std over seeds of last head acc, dLP and dZS, ranks and
    spread marks; per number its bootstrap CI, its IQM over seed x task runs (with CI) and its
    difference from ``baseline`` (with CI) with the probability of improving on it
    (``benchmark.reporting.statistics``). ``baseline``: a method on the board; None:
    finetune if present, else the first method. One seed: no std and no CI (NaN, written empty).

    ``hparams`` is the run config's ``hparams`` section: a method none of whose parts it
    names ran with its built-in defaults and is marked ``default`` (untuned) in the
    ``hparams`` column, else ``set``; None (no config at hand) leaves the column empty.
    ``hparams_labels`` (method -> label) replaces that rule where the caller knows better: a
    sweep marks the settings it chose among several ``tuned``.

    ``failed_runs`` adds (method, seed) pairs known to have failed (e.g. from manifest.json) to
    those whose rows have ``status == "failed"``. Rows are sorted by rank_acc, then rank_dlp;
    methods with only failed seeds are kept, with NaN metrics and no rank.
    """
    failed_seeds = _failed_seeds(df_long, failed_runs)
    usable = table.usable_rows(df_long)
    summary = reports.summarise(usable) if len(usable) else None
    methods = list(dict.fromkeys(table.methods_in_order(df_long) + list(failed_seeds)))
    board = pd.DataFrame([_method_record(method, usable, summary, failed_seeds) for method in methods])
    board["baseline"] = resolve_baseline(baseline, methods)
    stats = pd.DataFrame([_statistics(usable, method, board["baseline"].iloc[0]) for method in methods])
    board = pd.concat([board, stats], axis=1)
    board["hparams"] = [
        hparams_labels.get(method, "") if hparams_labels is not None else hparams_source(method, hparams)
        for method in methods
    ]
    for metric in BOARD_METRICS:
        seeds_column = f"_n_{metric.column}"
        if metric.rank_column:
            board[metric.rank_column] = board[metric.column].rank(ascending=False, method="min").astype("Int64")
        board[metric.mark_column] = spread_marks(
            board[metric.column].to_numpy(float),
            board[f"{metric.column}_std"].to_numpy(float),
            board[seeds_column].to_numpy(int),
        )
    board = board.sort_values(["rank_acc", "rank_dlp"], na_position="last", kind="stable")
    return board[leaderboard_columns()].reset_index(drop=True)


def leaderboard_columns() -> list[str]:
    """Column order of :func:`build_leaderboard`."""
    columns = ["method", "status", "hparams", "n_seeds"]
    for metric in BOARD_METRICS:
        columns += [metric.column, f"{metric.column}_std"]
        columns += [metric.rank_column] if metric.rank_column else []
        columns.append(metric.mark_column)
        columns += [f"{metric.column}_{suffix}" for suffix in STAT_SUFFIXES]
    return columns + ["baseline", "failed_seeds"]


def resolve_baseline(baseline: Optional[str], methods: list[str]) -> str:
    """The method the others are compared with (a UserError naming the choices if unknown)."""
    if baseline is None:
        return DEFAULT_BASELINE if DEFAULT_BASELINE in methods else (methods[0] if methods else "")
    if baseline not in methods:
        raise choices_error("baseline method", baseline, methods)
    return baseline


def seed_task_matrix(usable: pd.DataFrame, method: str, metric: BoardMetric) -> tuple[list[int], np.ndarray]:
    """The method's seeds and its ``[seeds, tasks]`` matrix of the per-task numbers ``metric``
    averages: final accuracy per trained task, or final minus pre-trained accuracy per
    eval-only task (``metrics.concept_forgetting``)."""
    if not len(usable):
        return [], np.zeros((0, 0))
    sequence, eval_only = table.sequence_tasks(usable), table.eval_only_tasks(usable)
    tasks = sequence if metric.over == "trained" else eval_only
    seeds = table.seeds_of(usable, method, metric.kind)
    rows = []
    for seed in seeds:
        A = table.accuracy_matrix(usable, method, seed, metric.kind, tasks)
        rows.append(A[-1] if metric.over == "trained" else metrics.concept_forgetting(A)[-1])
    return seeds, np.array(rows, dtype=float).reshape(len(seeds), len(tasks))


def _statistics(usable: pd.DataFrame, method: str, baseline: str) -> dict[str, float]:
    """The statistics columns of one method (NaN where a number or an interval does not exist)."""
    record = {}
    for metric in BOARD_METRICS:
        seeds, X = seed_task_matrix(usable, method, metric)
        base_seeds, B = seed_task_matrix(usable, baseline, metric)
        values = dict.fromkeys(STAT_SUFFIXES, float("nan"))
        if X.size:
            values.update(_interval("", statistics.mean_interval(X)) | _interval("iqm", statistics.iqm_interval(X)))
            if method != baseline and B.size and X.shape[1] == B.shape[1]:
                paired = seeds == base_seeds  # the same seeds: compare seed by seed
                values.update(_interval("diff", statistics.difference_interval(X, B, paired)))
                values.update(_interval("p_improve", statistics.improvement_interval(X, B)))
        record.update({f"{metric.column}_{suffix}": value for suffix, value in values.items()})
    return record


def _interval(name: str, interval: statistics.Interval) -> dict[str, float]:
    prefix = f"{name}_" if name else ""
    values = {f"{prefix}ci_low": interval.low, f"{prefix}ci_high": interval.high}
    return values | ({name: interval.value} if name else {})


def hparams_source(method: str, hparams: Optional[dict[str, Any]]) -> str:
    """``set`` when the config gives hyperparameters to any part of ``method`` (``ldifs+replay``:
    ldifs or replay) or the method is labelled with them (``ldifs[alpha=10]``), ``default``
    when every part ran with its built-in values, "" if unknown."""
    if hparams is None:
        return ""
    return "set" if "[" in method or any(part in hparams for part in method.split("+")) else "default"


def method_label(spec: str, hparams: Optional[dict[str, Any]]) -> str:
    """The method with the hyperparameters its run's config set, as sweeps label their
    settings: ``ldifs[alpha=10]``; a composition names the part, ``ldifs+replay[ldifs.alpha=10]``.
    Unchanged when nothing was set, when the config is unknown (None) or when already labelled
    (a merged run's rows), so two plain runs of one method with different values can share a
    leaderboard as two rows."""
    if not hparams or "[" in spec:
        return spec
    parts = spec.split("+")
    items = [
        f"{key}={_text(value)}" if len(parts) == 1 else f"{part}.{key}={_text(value)}"
        for part in parts
        for key, value in sorted((hparams.get(part) or {}).items())
    ]
    return f"{spec}[{','.join(items)}]" if items else spec


def _text(value: Any) -> str:
    """A hyperparameter value as a label shows it (70.0 -> 70, lists joined by '/')."""
    if isinstance(value, (list, tuple)):
        return "/".join(_text(v) for v in value)
    return f"{value:g}" if isinstance(value, float) else str(value)


def label_methods(df_long: pd.DataFrame, hparams: Optional[dict[str, Any]]) -> pd.DataFrame:
    """``df_long`` with every method labelled by :func:`method_label`."""
    labels = {method: method_label(method, hparams) for method in table.methods_in_order(df_long)}
    return df_long.assign(method=df_long["method"].map(lambda method: labels.get(method, method)))


def _failed_seeds(df_long: pd.DataFrame, failed_runs: Iterable[tuple[str, int]]) -> dict[str, set[int]]:
    """Seeds of each method that failed, from the ``status`` column and from ``failed_runs``."""
    failed: dict[str, set[int]] = {}
    pairs = list(failed_runs)
    if "status" in df_long.columns:
        rows = df_long[df_long["status"] == "failed"]
        pairs += list(zip(rows["method"], rows["seed"]))
    for method, seed in pairs:
        failed.setdefault(str(method), set()).add(int(seed))
    return failed


def _method_record(
    method: str,
    usable: pd.DataFrame,
    summary: Optional[pd.DataFrame],
    failed_seeds: dict[str, set[int]],
) -> dict[str, Any]:
    """The leaderboard numbers of one method, read from its summarise() rows (NaN where absent)."""
    seeds = pd.unique(usable.loc[usable["method"] == method, "seed"])
    failed = sorted(failed_seeds.get(method, set()))
    record: dict[str, Any] = {
        "method": method,
        "status": "failed" if failed else "ok",
        "n_seeds": len(seeds),
        "failed_seeds": " ".join(map(str, failed)),
    }
    for metric in BOARD_METRICS:
        row = _summary_row(summary, method, metric.kind)
        found = row is not None
        record[metric.column] = float(row[metric.summary_column]) if found else np.nan
        one_seed = not found or int(row["n_seeds"]) < 2  # a std of one seed measures nothing: left empty
        record[f"{metric.column}_std"] = np.nan if one_seed else float(row[f"{metric.summary_column}_std"])
        record[f"_n_{metric.column}"] = int(row["n_seeds"]) if found else 0
    return record


def _summary_row(summary: Optional[pd.DataFrame], method: str, kind: str) -> Optional[pd.Series]:
    if summary is None:
        return None
    rows = summary[(summary["method"] == method) & (summary["kind"] == kind)]
    return rows.iloc[0] if len(rows) else None


def spread_marks(means: np.ndarray, stds: np.ndarray, n_seeds: np.ndarray) -> list[str]:
    """Per method, how its mean compares with the best mean given the spread over seeds.

    "best" for the highest mean (ties included); "≈" when the mean ± std intervals overlap,
    i.e. ``|mean - best| <= std_best + std_this``; "<" when they do not; "n/a (1 seed)" when
    this method or the best has a single seed (a std of 0 says nothing about the spread);
    "n/a" when the metric is missing. A heuristic, not a significance test.
    """
    if np.isnan(means).all():
        return [MISSING] * len(means)
    best = int(np.nanargmax(means))
    marks = []
    for mean, std, seeds in zip(means, stds, n_seeds):
        if np.isnan(mean):
            marks.append(MISSING)
        elif mean == means[best]:
            marks.append(BEST)
        elif seeds < 2 or n_seeds[best] < 2:
            marks.append(ONE_SEED)
        else:
            marks.append(OVERLAPS if abs(mean - means[best]) <= stds[best] + std else BELOW)
    return marks


# ---------------------------------------------------------------- a run's failed seeds


def read_manifest_runs(run_dir: Path) -> list[dict[str, Any]]:
    """The ``runs`` list of run_dir/manifest.json ([] when there is no manifest)."""
    path = Path(run_dir) / MANIFEST_JSON
    if not path.is_file():
        return []
    try:
        runs = json.loads(path.read_text(encoding="utf-8")).get("runs", [])
        return [
            {"method": str(run["method"]), "seed": int(run["seed"]), "status": str(run.get("status", "ok"))}
            for run in runs
        ]
    except (OSError, ValueError, TypeError, KeyError, AttributeError) as error:
        raise UserError(f"cannot read {path}: {error}") from None


def failed_runs_of(manifest_runs: Iterable[dict[str, Any]]) -> set[tuple[str, int]]:
    """(method, seed) of the manifest runs whose status is not "ok"."""
    return {(run["method"], run["seed"]) for run in manifest_runs if run["status"] != "ok"}
