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
    # "eval_only" (final minus pre-trained accuracy on the tasks never trained); or one
    # number per seed: "inc_avg" / "inc_last" (accuracy on every class seen so far, averaged
    # over stages / after the last one: iCaRL's and ZSCL's Avg and Last).
    over: str = "trained"


TASK_INCREMENTAL, CLASS_INCREMENTAL = "task_incremental", "class_incremental"
SCENARIOS = (TASK_INCREMENTAL, CLASS_INCREMENTAL)
_DLP = BoardMetric("dlp", "lp", "delta_final_untrained", "dlp_vs_best", "rank_dlp", "dLP", "eval_only")
_DZS = BoardMetric("dzs", "zs", "delta_final_untrained", "dzs_vs_best", None, "dZS", "eval_only")
BOARD_METRICS = (BoardMetric("last_head_acc", "head", "last", "acc_vs_best", "rank_acc", "last head acc"), _DLP, _DZS)
CIL_METRICS = (
    BoardMetric("inc_avg", "head", "inc_avg", "avg_vs_best", "rank_avg", "Avg", "inc_avg"),
    BoardMetric("inc_last", "head", "inc_last", "last_vs_best", "rank_last", "Last", "inc_last"),
    _DLP,
    _DZS,
)
# Each scenario's board: its metrics, the ranks it sorts by (its protocol's headline) and
# the caption that says so.
SCENARIO_METRICS = {TASK_INCREMENTAL: BOARD_METRICS, CLASS_INCREMENTAL: CIL_METRICS}
SORT_BY = {TASK_INCREMENTAL: ("rank_acc", "rank_dlp"), CLASS_INCREMENTAL: ("rank_avg", "rank_last")}
CAPTIONS = {
    TASK_INCREMENTAL: "Ranked by last head acc (final task-head accuracy on the trained tasks), then by dLP.",
    CLASS_INCREMENTAL: "Class-incremental: ranked by Avg (accuracy on all classes seen so far, averaged over "
    "stages), then by Last (the same after the final stage), the protocol's headline (iCaRL, ZSCL).",
}
# Cost columns, read from the runs' own records (manifest.json's per-stage measurements).
COST_COLUMNS = ("trainable_params", "train_s_per_stage", "images_per_s", "peak_host_mb", "peak_device_mb")


def scenario_of(board: pd.DataFrame) -> str:
    """The scenario a built board ranks by (from its columns)."""
    return CLASS_INCREMENTAL if "inc_avg" in board.columns else TASK_INCREMENTAL


def metrics_of(board: pd.DataFrame) -> tuple[BoardMetric, ...]:
    """The metrics of a built board, in its column order."""
    return SCENARIO_METRICS[scenario_of(board)]


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
    scenario: str = TASK_INCREMENTAL,
    costs: Optional[dict[str, dict[str, float]]] = None,
) -> pd.DataFrame:
    """One row per method: mean and std over seeds of the scenario's metrics (task-incremental:
    last head acc, dLP, dZS; class-incremental: Avg, Last, dLP, dZS), ranks and
    spread marks; per number its bootstrap CI, its IQM over seed x task runs (with CI) and its
    difference from ``baseline`` (with CI) with the probability of improving on it
    (``benchmark.reporting.statistics``). ``baseline``: a method on the board; None:
    finetune if present, else the first method. One seed: no std and no CI (NaN, written empty).

    ``hparams`` is the run config's ``hparams`` section: a method none of whose parts it
    names ran with its built-in defaults and is marked ``default`` (untuned) in the
    ``hparams`` column, else ``set``; None (no config at hand) leaves the column empty.
    ``hparams_labels`` (method -> label) replaces that rule where the caller knows better: a
    sweep marks the settings it chose among several ``tuned``. ``costs``: method -> cost
    columns (:func:`costs_of_runs`); absent methods get NaN.

    ``failed_runs`` adds (method, seed) pairs known to have failed (e.g. from manifest.json) to
    those whose rows have ``status == "failed"``. Rows are sorted by the scenario's ranks
    (:data:`SORT_BY`); methods with only failed seeds are kept, with NaN metrics and no rank.
    """
    if scenario not in SCENARIO_METRICS:
        raise choices_error("scenario", scenario, SCENARIOS)
    board_metrics = SCENARIO_METRICS[scenario]
    failed_seeds = _failed_seeds(df_long, failed_runs)
    usable = table.usable_rows(df_long)
    summary = reports.summarise(usable) if len(usable) else None
    methods = list(dict.fromkeys(table.methods_in_order(df_long) + list(failed_seeds)))
    board = pd.DataFrame([_method_record(method, usable, summary, failed_seeds, board_metrics) for method in methods])
    board["baseline"] = resolve_baseline(baseline, methods)
    base = board["baseline"].iloc[0]
    stats = pd.DataFrame([_statistics(usable, method, base, board_metrics) for method in methods])
    board = pd.concat([board, stats], axis=1)
    board["few_seeds"] = [_few_seeds_note(usable, method, base, board_metrics[0]) for method in methods]
    for column in COST_COLUMNS:
        board[column] = [float((costs or {}).get(method, {}).get(column, np.nan)) for method in methods]
    board["hparams"] = [
        hparams_labels.get(method, "") if hparams_labels is not None else hparams_source(method, hparams)
        for method in methods
    ]
    for metric in board_metrics:
        seeds_column = f"_n_{metric.column}"
        if metric.rank_column:
            board[metric.rank_column] = board[metric.column].rank(ascending=False, method="min").astype("Int64")
        board[metric.mark_column] = spread_marks(
            board[metric.column].to_numpy(float),
            board[f"{metric.column}_std"].to_numpy(float),
            board[seeds_column].to_numpy(int),
        )
    board = board.sort_values(list(SORT_BY[scenario]), na_position="last", kind="stable")
    return board[leaderboard_columns(scenario)].reset_index(drop=True)


def leaderboard_columns(scenario: str = TASK_INCREMENTAL) -> list[str]:
    """Column order of :func:`build_leaderboard`."""
    columns = ["method", "status", "hparams", "n_seeds"]
    for metric in SCENARIO_METRICS[scenario]:
        columns += [metric.column, f"{metric.column}_std"]
        columns += [metric.rank_column] if metric.rank_column else []
        columns.append(metric.mark_column)
        columns += [f"{metric.column}_{suffix}" for suffix in STAT_SUFFIXES]
    return columns + ["few_seeds", *COST_COLUMNS, "baseline", "failed_seeds"]


def base_method(label: str) -> str:
    """``ldifs[alpha=100]`` -> ``ldifs``."""
    return label.split("[", 1)[0]


def resolve_baseline(baseline: Optional[str], methods: list[str]) -> str:
    """The method the others are compared with (a UserError naming the choices if unknown).
    A bare method name stands for its one labelled setting on the board (``ldifs`` for
    ``ldifs[alpha=100]``); with several settings, the label must be given."""
    if baseline is None:
        default = [m for m in methods if m == DEFAULT_BASELINE] or [
            m for m in methods if base_method(m) == DEFAULT_BASELINE
        ]
        return default[0] if len(default) == 1 else (methods[0] if methods else "")
    if baseline in methods:
        return baseline
    settings = [method for method in methods if base_method(method) == baseline]
    if len(settings) == 1:
        return settings[0]
    if settings:
        raise UserError(f"baseline {baseline!r} has {len(settings)} settings here; name one: {', '.join(settings)}")
    raise choices_error("baseline method", baseline, methods)


def seed_task_matrix(usable: pd.DataFrame, method: str, metric: BoardMetric) -> tuple[list[int], np.ndarray]:
    """The method's seeds and its ``[seeds, tasks]`` matrix of the per-task numbers ``metric``
    averages: final accuracy per trained task, or final minus pre-trained accuracy per
    eval-only task (``metrics.concept_forgetting``)."""
    if not len(usable):
        return [], np.zeros((0, 0))
    sequence, eval_only = table.sequence_tasks(usable), table.eval_only_tasks(usable)
    seeds = table.seeds_of(usable, method, metric.kind)
    if metric.over in ("inc_avg", "inc_last"):  # one number per seed: a [seeds, 1] matrix
        weights = reports.sequence_weights(usable, sequence)
        rows = []
        for seed in seeds:
            incremental = metrics.incremental_accuracy(
                table.accuracy_matrix(usable, method, seed, metric.kind, sequence), weights
            )
            rows.append([incremental.mean() if metric.over == "inc_avg" else incremental[-1]])
        return seeds, np.array(rows, dtype=float).reshape(len(seeds), 1)
    tasks = sequence if metric.over == "trained" else eval_only
    rows = []
    for seed in seeds:
        A = table.accuracy_matrix(usable, method, seed, metric.kind, tasks)
        rows.append(A[-1] if metric.over == "trained" else metrics.concept_forgetting(A)[-1])
    return seeds, np.array(rows, dtype=float).reshape(len(seeds), len(tasks))


def _statistics(
    usable: pd.DataFrame, method: str, baseline: str, board_metrics: tuple[BoardMetric, ...] = BOARD_METRICS
) -> dict[str, float]:
    """The statistics columns of one method (NaN where a number or an interval does not exist)."""
    record = {}
    for metric in board_metrics:
        seeds, X = seed_task_matrix(usable, method, metric)
        base_seeds, B = seed_task_matrix(usable, baseline, metric)
        values = dict.fromkeys(STAT_SUFFIXES, float("nan"))
        if X.size:
            values.update(_interval("", statistics.mean_interval(X)) | _interval("iqm", statistics.iqm_interval(X)))
            if method != baseline and B.size and X.shape[1] == B.shape[1]:
                values.update(_comparison(X, B, seeds == base_seeds))
        record.update({f"{metric.column}_{suffix}": value for suffix, value in values.items()})
    return record


def _comparison(X: np.ndarray, B: np.ndarray, paired: bool) -> dict[str, float]:
    """Δ and P(>) of X against B, both on the per-seed task averages (one statement: the
    difference of the mean and how often a seed's average beats the baseline's)."""
    difference = statistics.difference_interval(X, B, paired)  # paired: the same seeds, compared seed by seed
    averages = (statistics.seed_means(X)[:, None], statistics.seed_means(B)[:, None])
    return _interval("diff", difference) | _interval("p_improve", statistics.improvement_interval(*averages))


def _few_seeds_note(usable: pd.DataFrame, method: str, baseline: str, metric: BoardMetric) -> str:
    """Which of the method's bootstrap intervals are labelled ``few seeds`` (docs/statistics.md)."""
    n = len(table.seeds_of(usable, method, metric.kind))
    n_base = len(table.seeds_of(usable, baseline, metric.kind))
    labelled = ["iqm"] if statistics.few_seeds("iqm", n) else []
    if method != baseline and statistics.few_seeds("p_improve", min(n, n_base)):
        labelled.append("p_improve")
    return " ".join(labelled)


def comparison_table(df_long: pd.DataFrame, board: pd.DataFrame) -> pd.DataFrame:
    """Every method against the board's baseline, per eval task and aggregated (``task`` =
    "mean over tasks"), in the same two numbers: Δ with its t interval and P(>) with its
    bootstrap interval, both on per-seed values (the aggregate row equals the board's)."""
    usable = table.usable_rows(df_long)
    baseline = str(board["baseline"].iloc[0]) if len(board) else ""
    rows = []
    for metric in metrics_of(board):
        columns = _tasks_of(usable, metric)
        base_seeds, B = seed_task_matrix(usable, baseline, metric)
        for method in board["method"]:
            seeds, X = seed_task_matrix(usable, method, metric)
            if method == baseline or not X.size or not B.size or X.shape[1] != B.shape[1]:
                continue
            paired = seeds == base_seeds
            parts = [(task, X[:, [t]], B[:, [t]]) for t, task in enumerate(columns)] if len(columns) > 1 else []
            for task, x, b in [*parts, (AGGREGATE, X, B)]:
                values = _comparison(x, b, paired)
                rows.append({"metric": metric.label, "method": method, "baseline": baseline, "task": task} | values)
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


AGGREGATE = "mean over tasks"
COMPARISON_COLUMNS = ["metric", "method", "baseline", "task", "diff", "diff_ci_low", "diff_ci_high"]
COMPARISON_COLUMNS += ["p_improve", "p_improve_ci_low", "p_improve_ci_high"]


def _tasks_of(usable: pd.DataFrame, metric: BoardMetric) -> list[str]:
    """The columns of a metric's matrix: its tasks, or the one per-seed number."""
    if metric.over in ("inc_avg", "inc_last"):
        return [AGGREGATE]
    return table.sequence_tasks(usable) if metric.over == "trained" else table.eval_only_tasks(usable)


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
    board_metrics: tuple[BoardMetric, ...] = BOARD_METRICS,
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
    for metric in board_metrics:
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
    i.e. ``|mean - best| <= std_best + std_this``; "<" when they do not; "n/a (1 seed)" only
    when this method has a single seed (a std of 0 says nothing about the spread); a best
    method of one seed counts as a point (its std left out of the sum); "n/a" when the
    metric is missing. A heuristic, not a significance test.
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
        elif seeds < 2:
            marks.append(ONE_SEED)
        else:
            best_std = stds[best] if n_seeds[best] >= 2 else 0.0
            marks.append(OVERLAPS if abs(mean - means[best]) <= best_std + std else BELOW)
    return marks


# ---------------------------------------------------------------- a run's records


def costs_of_runs(manifest_runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method, the cost columns from the per-stage measurements of its runs (manifest.json's
    ``runs[].stages``): trainable parameters (largest over stages), mean train seconds per
    stage, training images per second (images over train seconds, all stages), and the peak
    host and device memory (MiB, the largest). NaN where no run recorded it."""
    pooled: dict[str, list[dict[str, Any]]] = {}
    for run in manifest_runs:
        pooled.setdefault(str(run["method"]), []).extend(s for s in run.get("stages") or [] if isinstance(s, dict))
    return {method: _costs(stages) for method, stages in pooled.items() if stages}


def _costs(stages: list[dict[str, Any]]) -> dict[str, float]:
    def values(key: str) -> np.ndarray:
        return np.array([float(s[key]) for s in stages if isinstance(s.get(key), (int, float))], dtype=float)

    def largest(key: str) -> float:
        found = values(key)
        return float(np.nanmax(found)) if found.size and not np.isnan(found).all() else float("nan")

    seconds, images = values("train_seconds"), values("train_images")
    timed = [s for s in stages if isinstance(s.get("train_images"), (int, float)) and s.get("train_seconds")]
    rate = sum(s["train_images"] for s in timed) / sum(s["train_seconds"] for s in timed) if timed else float("nan")
    return {
        "trainable_params": largest("trainable_params"),
        "train_s_per_stage": float(seconds.mean()) if seconds.size else float("nan"),
        "images_per_s": float(rate) if images.size else float("nan"),
        "peak_host_mb": largest("peak_host_mb"),
        "peak_device_mb": largest("peak_device_mb"),
    }


def read_manifest_stages(run_dir: Path) -> list[dict[str, Any]]:
    """``runs`` of run_dir/manifest.json with their per-stage records ([] when absent or unreadable)."""
    try:
        runs = json.loads((Path(run_dir) / MANIFEST_JSON).read_text(encoding="utf-8")).get("runs", [])
        return [
            {"method": str(r["method"]), "seed": int(r["seed"]), "stages": list(r.get("stages") or [])} for r in runs
        ]
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return []


def read_scenario(run_dir: Path) -> str:
    """The scenario manifest.json records (the runner writes it); task-incremental when absent."""
    try:
        scenario = json.loads((Path(run_dir) / MANIFEST_JSON).read_text(encoding="utf-8")).get("scenario")
    except (OSError, ValueError, AttributeError):
        return TASK_INCREMENTAL
    return scenario if scenario in SCENARIOS else TASK_INCREMENTAL


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
