"""The leaderboard: one row per method, ranked by final head accuracy and by concept forgetting.

Built from ``accuracy_long.csv`` alone (plus manifest.json for runs that failed), written as
leaderboard.csv, leaderboard.md and a self-contained leaderboard.html. Runs made separately
(other methods, other seeds, other machines) are merged with
``python -m benchmark.reporting.leaderboard RUN1 RUN2 ... [--out DIR]``, which refuses runs whose
numbers are not comparable (see :func:`check_mergeable`).
"""

from __future__ import annotations

import base64
import html
import json
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd
import yaml

from benchmark import rundir
from benchmark.config import load_yaml
from benchmark.errors import OneLineParser, UserError, run_command
from benchmark.files import atomic_text, load_yaml_file
from benchmark.reporting import reports, table
from benchmark.rundir import (
    CONFIG_YAML,
    LEADERBOARD_CSV,
    LEADERBOARD_HTML,
    LEADERBOARD_MD,
    MANIFEST_JSON,
    MERGE_JSON,
    run_title,
    safe_name,
)

DEFAULT_MERGE_OUT = Path("results/leaderboard-merged")

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


BOARD_METRICS = (
    BoardMetric("last_head_acc", "head", "last", "acc_vs_best", "rank_acc", "last head acc"),
    BoardMetric("dlp", "lp", "delta_final_untrained", "dlp_vs_best", "rank_dlp", "dLP"),
    BoardMetric("dzs", "zs", "delta_final_untrained", "dzs_vs_best", None, "dZS"),
)

LEGEND = (
    "- **last head acc**: task-head accuracy (%) after the final stage, averaged over the sequence's "
    "trained tasks (`last` in summary.csv).\n"
    "- **dLP / dZS**: linear-probe / zero-shot accuracy after the final stage minus the pre-trained "
    "model's, averaged over the eval-only tasks (never trained). Negative = concepts forgotten; "
    "higher is better. n/a when the run has no eval-only task or did not evaluate that kind.\n"
    "- **±**: population std over seeds (ddof 0, as in summary.csv).\n"
    "- **rank** (rank_acc / rank_dlp in leaderboard.csv): 1 = highest mean; equal means share a rank.\n"
    "- **vs best**: `best` = highest mean; `≈` = this method's mean ± std interval overlaps the "
    "best one's (|mean − best mean| ≤ std_best + std_this); `<` = the gap is larger than that sum. "
    "A heuristic, not a significance test: with 2-3 seeds the std is itself very uncertain. "
    "`n/a (1 seed)`: this method or the best has a single seed, so there is no spread to compare with.\n"
    "- **hparams**: `tuned` = a sweep chose this setting among several on the validation split "
    "(selection.md lists them); `set` = the run's config gave this method's hyperparameters (a preset, "
    "`--hparams.<method>.<name>` or a sweep); `default` = its built-in values, which for the "
    "regularisers are a measured working range, not a tuned optimum (methods without "
    "hyperparameters, e.g. finetune, are always `default`).\n"
    "- **status**: `failed` when any seed's run failed (seeds in failed_seeds); failed rows are left "
    "out of every number.\n"
)


# ---------------------------------------------------------------- building the table


def build_leaderboard(
    df_long: pd.DataFrame,
    failed_runs: Iterable[tuple[str, int]] = (),
    hparams: Optional[dict[str, Any]] = None,
    hparams_labels: Optional[dict[str, str]] = None,
) -> pd.DataFrame:
    """One row per method: mean and std over seeds of last head acc, dLP and dZS, ranks and spread marks.

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
    return columns + ["failed_seeds"]


def hparams_source(method: str, hparams: Optional[dict[str, Any]]) -> str:
    """``set`` when the config gives hyperparameters to any part of ``method`` (``ldifs+replay``:
    ldifs or replay), ``default`` when every part ran with its built-in values, "" if unknown."""
    if hparams is None:
        return ""
    return "set" if any(part in hparams for part in method.split("+")) else "default"


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
        record[f"{metric.column}_std"] = float(row[f"{metric.summary_column}_std"]) if found else np.nan
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


# ---------------------------------------------------------------- markdown and HTML


def _mean_std_text(mean: float, std: float, n_seeds: int) -> str:
    """Mean and std as text; the mean alone for one seed, whose std of 0 would suggest a measured spread."""
    if np.isnan(mean):
        return "n/a"
    return f"{mean:.1f} ± {std:.1f}" if n_seeds > 1 else f"{mean:.1f}"


def _rank_text(rank: Any) -> str:
    return "" if pd.isna(rank) else str(int(rank))


def display_cells(board: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Headers and, per row, (shown text, sort key) cells shared by the markdown and HTML tables.

    Sort keys are the raw numbers (empty for missing), so the HTML sorts by mean, not by text.
    """
    headers = ["method", "status", "hparams", "n_seeds"]
    for metric in BOARD_METRICS:
        headers.append(f"{metric.label} (mean ± std)")
        headers += [f"{metric.label} rank"] if metric.rank_column else []
        headers.append(f"{metric.label} vs best")
    headers.append("failed_seeds")
    rows = []
    for _, entry in board.iterrows():
        cells = [
            (entry["method"], entry["method"]),
            (entry["status"], entry["status"]),
            (entry["hparams"], entry["hparams"]),
            (str(entry["n_seeds"]), str(entry["n_seeds"])),
        ]
        for metric in BOARD_METRICS:
            mean = float(entry[metric.column])
            cells.append(
                (
                    _mean_std_text(mean, float(entry[f"{metric.column}_std"]), int(entry["n_seeds"])),
                    "" if np.isnan(mean) else repr(mean),
                )
            )
            if metric.rank_column:
                rank = _rank_text(entry[metric.rank_column])
                cells.append((rank, rank))
            mark = entry[metric.mark_column]
            cells.append((mark, MARK_SORT_KEYS[mark]))
        cells.append((entry["failed_seeds"], entry["failed_seeds"]))
        rows.append(cells)
    return headers, rows


def _run_description(df_long: pd.DataFrame) -> list[str]:
    """Bullet lines naming the sequence and the eval-only tasks."""
    usable = table.usable_rows(df_long)
    sequence, eval_only = table.sequence_tasks(usable), table.eval_only_tasks(usable)
    return [
        f"- Sequence: {' -> '.join(sequence) or '(none)'}",
        f"- Eval-only tasks (dLP / dZS are measured on these): {', '.join(eval_only) or '(none)'}",
    ]


def leaderboard_markdown(title: str, df_long: pd.DataFrame, board: pd.DataFrame) -> str:
    """The text of leaderboard.md: what was run, the table, and the legend."""
    headers, rows = display_cells(board)
    table = pd.DataFrame([[text for text, _ in cells] for cells in rows], columns=headers, dtype=object)
    return "\n".join(
        [f"# Leaderboard: {title}", "", *_run_description(df_long), "", reports.markdown_table(table), LEGEND]
    )


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.7em; text-align: right; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
tr.failed td { color: #a00; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 640px; border: 1px solid #eee; }
.legend li { margin: 0.2em 0; }
"""

# Click a header to sort by it; click again to reverse. Missing values (empty keys) stay last.
HTML_SORT_SCRIPT = """
document.querySelectorAll("table.sortable th").forEach(function (header, column) {
  header.addEventListener("click", function () {
    var table = header.closest("table"), body = table.tBodies[0];
    var ascending = header.dataset.order !== "asc";
    table.querySelectorAll("th").forEach(function (other) { delete other.dataset.order; });
    header.dataset.order = ascending ? "asc" : "desc";
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = a.cells[column].dataset.sort, y = b.cells[column].dataset.sort;
      if (x === "" || y === "") { return (x === "") - (y === ""); }
      var nx = parseFloat(x), ny = parseFloat(y);
      var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
      return ascending ? order : -order;
    });
    rows.forEach(function (row) { body.appendChild(row); });
  });
});
"""


def _html_table(board: pd.DataFrame) -> str:
    """The sortable leaderboard table; each cell carries its sort key in ``data-sort``."""
    headers, rows = display_cells(board)
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = []
    for cells, status in zip(rows, board["status"]):
        row_class = ' class="failed"' if status == "failed" else ""
        tds = "".join(f'<td data-sort="{html.escape(key)}">{html.escape(text)}</td>' for text, key in cells)
        body.append(f"<tr{row_class}>{tds}</tr>")
    return f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def figure_paths(run_dir: Path, methods: Sequence[str]) -> list[Path]:
    """The run's PNGs worth embedding, in reading order: forgetting curve, dLP heatmaps, accuracy heatmaps.

    Named from the methods on the board, so stale figures of other methods in plots/ are left out.
    """

    plot_dir = Path(run_dir) / rundir.PLOTS_DIR
    names = ["forgetting_curve.png"] + [f"dlp_{safe_name(method)}.png" for method in methods]
    names += [f"heatmap_{safe_name(method)}_{kind}.png" for method in methods for kind in table.KINDS]
    return [plot_dir / name for name in names if (plot_dir / name).is_file()]


def _html_figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(path.stem)
    return (
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
    )


def _legend_html() -> str:
    """The markdown legend as an HTML list (only ** and ` markup to translate)."""
    items = []
    for line in LEGEND.strip().splitlines():
        text = html.escape(line.removeprefix("- "))
        parts = text.split("**")
        text = "".join(f"<b>{part}</b>" if index % 2 else part for index, part in enumerate(parts))
        parts = text.split("`")
        items.append("".join(f"<code>{part}</code>" if index % 2 else part for index, part in enumerate(parts)))
    return '<ul class="legend">' + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def leaderboard_html(title: str, df_long: pd.DataFrame, board: pd.DataFrame, figures: Sequence[Path]) -> str:
    """A single HTML file with everything inline: CSS, the sort script and the figures as data URIs."""
    description = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in _run_description(df_long))
    figures_html = "".join(_html_figure(path) for path in figures) or "<p>(no figures in plots/)</p>"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Leaderboard: {html.escape(title)}</title><style>{HTML_STYLE}</style></head>\n<body>"
        f"<h1>Leaderboard: {html.escape(title)}</h1><ul>{description}</ul>"
        f"<p>Click a column header to sort.</p>{_html_table(board)}{_legend_html()}"
        f"<h2>Figures</h2>{figures_html}<script>{HTML_SORT_SCRIPT}</script></body></html>\n"
    )


# ---------------------------------------------------------------- one run


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


def write_leaderboard_files(
    out_dir: Path,
    df_long: pd.DataFrame,
    failed_runs: Iterable[tuple[str, int]] = (),
    hparams: Optional[dict[str, Any]] = None,
    hparams_labels: Optional[dict[str, str]] = None,
) -> list[Path]:
    """Write leaderboard.csv, .md and .html into out_dir (figures from out_dir/plots); return the paths."""
    out_dir = Path(out_dir)
    board = build_leaderboard(df_long, failed_runs, hparams, hparams_labels)
    title = run_title(out_dir)
    paths = [out_dir / LEADERBOARD_CSV, out_dir / LEADERBOARD_MD, out_dir / LEADERBOARD_HTML]
    atomic_text(paths[0], board.to_csv(index=False))
    atomic_text(paths[1], leaderboard_markdown(title, df_long, board))
    figures = figure_paths(out_dir, list(board["method"]))
    atomic_text(paths[2], leaderboard_html(title, df_long, board, figures))
    return paths


def write_leaderboard(run_dir: Path) -> list[Path]:
    """Build the leaderboard of one run from its accuracy_long.csv (and manifest.json) and write it there."""
    run_dir = Path(run_dir)
    df_long = table.load_long_csv(run_dir / rundir.LONG_CSV)
    failed = failed_runs_of(read_manifest_runs(run_dir))
    return write_leaderboard_files(run_dir, df_long, failed, _config_hparams(run_dir / CONFIG_YAML))


def _config_hparams(path: Path) -> Optional[dict[str, Any]]:
    """The ``hparams`` section of a run's config.yaml; None when there is no readable config."""
    if not path.is_file():
        return None
    try:
        config = load_yaml_file(path, "run config")  # the suite's one safe reader
    except UserError:
        return None
    return dict(config.get("hparams") or {}) if isinstance(config, dict) else None


# ---------------------------------------------------------------- merging runs


@dataclass
class LoadedRun:
    """What merging needs of one run directory."""

    path: Path
    df: pd.DataFrame
    config: dict[str, Any]
    manifest_runs: list[dict[str, Any]] = field(default_factory=list)

    def method_seeds(self) -> set[tuple[str, int]]:
        """Every (method, seed) the run holds, failed ones included."""
        pairs = {(str(method), int(seed)) for method, seed in zip(self.df["method"], self.df["seed"])}
        return pairs | {(run["method"], run["seed"]) for run in self.manifest_runs}


def load_run(run_dir: Path) -> LoadedRun:
    """Read a run's long CSV, config.yaml and manifest; a missing piece is a one-line UserError."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if not (run_dir / rundir.LONG_CSV).is_file():
        raise UserError(f"{run_dir} has no {rundir.LONG_CSV}; is it a finished run directory?")
    config_path = run_dir / CONFIG_YAML
    if not config_path.is_file():
        raise UserError(f"{run_dir} has no {CONFIG_YAML}, so its settings cannot be checked against the other runs")
    config = load_yaml_file(config_path, "run config") or {}  # size-capped, no YAML aliases
    if isinstance(config, dict):
        load_yaml(config_path)  # the run config's own schema: a wrong type is one line naming the file
    if not isinstance(config, dict):
        raise UserError(f"{config_path} is not a mapping")
    df = table.load_long_csv(run_dir / rundir.LONG_CSV)
    return LoadedRun(run_dir, df, config, read_manifest_runs(run_dir))


def _flatten(section: Any, prefix: str) -> dict[str, Any]:
    """A nested config section as dotted keys; a missing section becomes one key set to None."""
    if not isinstance(section, dict):
        return {prefix: section}
    flat: dict[str, Any] = {}
    for key, value in section.items():
        flat.update(_flatten(value, f"{prefix}.{key}"))
    return flat


def comparison_keys(run: LoadedRun) -> dict[str, Any]:
    """The settings that must be equal for two runs' numbers to share one leaderboard, as dotted keys.

    The sequence as the CSV records it (stage order, eval-only tasks) and as config.yaml names
    it (which also fixes per-stage epochs); the model and, for a suite-pretrained model, how it
    was pretrained; the training protocol; the evaluation settings except eval.batch_size,
    which only changes speed (so that a smaller GPU can use a smaller batch).
    """
    usable = table.usable_rows(run.df)
    config = run.config
    keys: dict[str, Any] = {
        "sequence stage order (accuracy_long.csv)": table.sequence_tasks(usable),
        "eval-only tasks (accuracy_long.csv)": sorted(table.eval_only_tasks(usable)),
        "sequence (config.yaml)": config.get("sequence"),
    }
    model = config.get("model") or {}
    keys["model.name"], keys["model.pretrained"] = model.get("name"), model.get("pretrained")
    if model.get("pretrained") == "suite":
        keys.update(_flatten(model.get("pretrain"), "model.pretrain"))
    keys.update(_flatten(config.get("train"), "train"))
    evaluation = _flatten(config.get("eval"), "eval")
    keys.update({key: value for key, value in evaluation.items() if key != "eval.batch_size"})
    keys.setdefault("eval.splits", ["test"])  # runs from before the option scored test only
    return keys


_ABSENT = "(absent)"


def check_mergeable(runs: Sequence[LoadedRun]) -> None:
    """Raise UserError naming the first setting, method hparams or (method, seed) that forbids merging.

    Methods and seeds may differ between runs. Everything in :func:`comparison_keys` must be
    equal; a method present in two runs must have the same hparams for each of its components
    (its seeds are pooled into one mean); and no (method, seed) may come from two runs.
    """
    first = runs[0]
    first_keys = comparison_keys(first)
    for other in runs[1:]:
        other_keys = comparison_keys(other)
        for key in dict.fromkeys([*first_keys, *other_keys]):
            mine, theirs = first_keys.get(key, _ABSENT), other_keys.get(key, _ABSENT)
            if mine != theirs:
                raise UserError(f"cannot merge {first.path} and {other.path}: {key} differs ({mine!r} vs {theirs!r})")
    for index, run in enumerate(runs):
        for other in runs[index + 1 :]:
            _check_shared_methods(run, other)


def _check_shared_methods(run: LoadedRun, other: LoadedRun) -> None:
    """Refuse a (method, seed) held by both runs, and a shared method whose hparams differ."""
    duplicates = sorted(run.method_seeds() & other.method_seeds())
    if duplicates:
        method, seed = duplicates[0]
        raise UserError(
            f"cannot merge {run.path} and {other.path}: both hold method {method!r} seed {seed} "
            f"({len(duplicates)} duplicate (method, seed) pair(s)); give each pair once"
        )
    shared = {method for method, _ in run.method_seeds()} & {method for method, _ in other.method_seeds()}
    for method in sorted(shared):
        for component in method.split("+"):
            mine = (run.config.get("hparams") or {}).get(component, {})
            theirs = (other.config.get("hparams") or {}).get(component, {})
            if mine != theirs:
                raise UserError(
                    f"cannot merge {run.path} and {other.path}: method {method!r} is in both but "
                    f"hparams.{component} differs ({mine!r} vs {theirs!r})"
                )


def merged_long(runs: Sequence[LoadedRun]) -> pd.DataFrame:
    """The runs' long CSVs stacked; rows of runs without a status column count as "ok"."""
    frames = [run.df for run in runs]
    merged = pd.concat(frames, ignore_index=True)
    if "status" in merged.columns:
        merged["status"] = merged["status"].fillna("ok")
    return merged


def merged_config(runs: Sequence[LoadedRun], name: str) -> dict[str, Any]:
    """The first run's config with the union of methods, seeds and hparams, so the merge can be merged again."""
    config = dict(runs[0].config)
    config["name"] = name
    config["methods"] = list(dict.fromkeys(method for run in runs for method in run.config.get("methods") or []))
    config["seeds"] = sorted({int(seed) for run in runs for seed in run.config.get("seeds") or []})
    hparams: dict[str, Any] = {}
    for run in runs:
        hparams.update(run.config.get("hparams") or {})  # shared methods were checked to agree
    config["hparams"] = hparams
    return config


def merged_manifest(runs: Sequence[LoadedRun]) -> dict[str, Any]:
    """Where the merged rows came from, and every (method, seed) run with its status and source."""
    entries = []
    for run in runs:
        statuses = {(entry["method"], entry["seed"]): entry["status"] for entry in run.manifest_runs}
        for method, seed in sorted(run.method_seeds()):
            entries.append(
                {"method": method, "seed": seed, "status": statuses.get((method, seed), "ok"), "source": str(run.path)}
            )
    return {"merged_from": [str(run.path) for run in runs], "runs": entries}


def check_merge_out(out_dir: Path, inputs: Sequence[Path]) -> None:
    """A merge writes only where nothing else lives: a missing or empty folder, or an earlier
    merge of the same runs (its merge.json lists them). Never one of the inputs, never
    inside one, never another run or someone's folder."""
    out = out_dir.resolve()
    for run in inputs:
        if out == run or run in out.parents:
            raise UserError(f"--out {out_dir} is (inside) the run {run} being merged; choose another folder")
    if not os.path.lexists(out_dir):
        return
    if not out_dir.is_dir():
        raise UserError(f"--out {out_dir} exists and is not a folder; choose another folder")
    if not any(out_dir.iterdir()):
        return
    try:
        earlier = json.loads((out_dir / MERGE_JSON).read_text())["merged_from"]
    except (OSError, ValueError, KeyError, TypeError):
        earlier = None
    if not isinstance(earlier, list) or sorted(map(str, earlier)) != sorted(str(p) for p in inputs):
        raise UserError(
            f"--out {out_dir} holds something other than an earlier merge of these runs (no matching "
            f"{MERGE_JSON}); refusing to overwrite it: choose an empty or new folder"
        )


def merge_runs(run_dirs: Sequence[Path], out_dir: Path, draw_plots: bool = True) -> list[Path]:
    """Check the runs can share a leaderboard, then write the merged run folder and its leaderboard.

    out_dir gets accuracy_long.csv, config.yaml and manifest.json (so it can be merged again or
    redrawn with ``python -m benchmark.reporting.reports``), the report and plots unless ``draw_plots`` is
    False, and leaderboard.csv/.md/.html. Raises UserError when the runs cannot be merged.
    """
    resolved = [Path(run_dir).resolve() for run_dir in run_dirs]
    repeated = next((path for index, path in enumerate(resolved) if path in resolved[:index]), None)
    if repeated:
        raise UserError(f"run {repeated} is given twice")
    check_merge_out(Path(out_dir), resolved)
    runs = [load_run(run_dir) for run_dir in run_dirs]
    check_mergeable(runs)
    out_dir = Path(out_dir)
    merged = merged_long(runs)
    atomic_text(out_dir / rundir.LONG_CSV, merged.to_csv(index=False))
    config = merged_config(runs, out_dir.resolve().name)
    atomic_text(out_dir / CONFIG_YAML, yaml.safe_dump(config, sort_keys=False))
    manifest = merged_manifest(runs)
    atomic_text(out_dir / MANIFEST_JSON, json.dumps(manifest, indent=2))
    atomic_text(out_dir / MERGE_JSON, json.dumps({"merged_from": [str(p) for p in sorted(resolved)]}, indent=2))
    if draw_plots:
        reports.write_report(out_dir)
    return write_leaderboard_files(out_dir, merged, failed_runs_of(manifest["runs"]), config["hparams"])


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m benchmark.reporting.leaderboard RUN1 RUN2 ... [--out DIR]``: merge runs into one leaderboard; 2 if refused."""
    parser = OneLineParser(prog="python -m benchmark.reporting.leaderboard", description=main.__doc__)
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (each with accuracy_long.csv and config.yaml)")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_MERGE_OUT, help=f"output folder (default {DEFAULT_MERGE_OUT})"
    )
    parser.add_argument("--no-plots", action="store_true", help="skip summary.csv, report.md and plots/ (faster)")

    def body() -> int:  # one line and code 2 for bad input and OS errors, 130 for Ctrl-C
        args = parser.parse_args(argv)
        paths = merge_runs(args.runs, args.out, draw_plots=not args.no_plots)
        print(f"wrote {paths[-1]}")
        return 0

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
