"""Rendering the leaderboard: leaderboard.csv, leaderboard.md and a self-contained
leaderboard.html (sortable table, legend, figures inline)."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pandas as pd

from benchmark import rundir
from benchmark.errors import UserError
from benchmark.files import atomic_text, load_yaml_file
from benchmark.reporting import reports, table
from benchmark.reporting.drift_table import drift_links_html
from benchmark.reporting.leaderboard_build import (
    CAPTIONS,
    COST_COLUMNS,
    MARK_SORT_KEYS,
    STAT_SUFFIXES,
    build_leaderboard,
    comparison_table,
    costs_of_runs,
    failed_runs_of,
    label_methods,
    method_label,
    metrics_of,
    read_manifest_runs,
    read_manifest_stages,
    read_scenario,
    scenario_of,
)
from benchmark.reporting.statistics import FEW_SEEDS, FEW_SEEDS_LABEL
from benchmark.rundir import CONFIG_YAML, LEADERBOARD_CSV, LEADERBOARD_HTML, LEADERBOARD_MD, run_title, safe_name

LEGEND = (
    "- **last head acc**: task-head accuracy (%) after the final stage, averaged over the sequence's "
    "trained tasks (`last` in summary.csv).\n"
    "- **dLP / dZS**: linear-probe / zero-shot accuracy after the final stage minus the pre-trained "
    "model's, averaged over the eval-only tasks (never trained). Negative = concepts forgotten; "
    "higher is better. n/a when the run has no eval-only task or did not evaluate that kind.\n"
    "- **Avg / Last** (class-incremental runs): accuracy on the test images of every class seen so far, "
    "with no task identity, averaged over stages / after the final stage (`inc_avg` / `inc_last` in "
    "summary.csv; iCaRL's and ZSCL's Avg and Last).\n"
    "- **±**: population std over seeds (ddof 0, as in summary.csv); none for one seed.\n"
    "- **[low, high]**: 95% Student t confidence interval of the mean over seeds (each seed's task average "
    "is one draw); none for one seed. Its coverage was measured by simulation: 95% for normal or "
    "heavy-tailed seeds at 2-10 seeds, less for skewed ones (docs/statistics.md).\n"
    "- **IQM**: interquartile mean of all seed x task values (the middle 50%), robust to one bad seed, "
    "with a percentile-bootstrap CI over seeds.\n"
    "- **Δ vs baseline**: this method's mean minus the baseline's, with its t interval (the per-seed "
    "differences when both ran the same seeds, else Welch's); a CI that excludes 0 is a difference "
    "the seeds support at the 95% level under the t interval's assumptions. **P(>)**: probability "
    "that a seed's task average of this method beats one of the baseline (ties count half), with a "
    "percentile-bootstrap CI: the same per-seed numbers as Δ. leaderboard_comparisons.csv gives both "
    "per eval task too.\n"
    f"- **{FEW_SEEDS_LABEL}**: a bootstrap interval (IQM below {FEW_SEEDS['iqm']} seeds, P(>) below "
    f"{FEW_SEEDS['p_improve']}) that covered less than 90% in the simulation at that many seeds: "
    "read it as a range the seeds span, not a 95% interval.\n"
    "- **rank** (rank_acc / rank_dlp in leaderboard.csv): 1 = highest mean; equal means share a rank.\n"
    "- **vs best**: `best` = highest mean; `≈` = this method's mean ± std interval overlaps the "
    "best one's (|mean − best mean| ≤ std_best + std_this); `<` = the gap is larger than that sum. "
    "A heuristic, not a significance test (for that, read Δ's CI): with 2-3 seeds the std is itself very uncertain. "
    "`n/a (1 seed)`: this method or the best has a single seed, so there is no spread to compare with.\n"
    "- **hparams**: `tuned` = a sweep chose this setting among several on the validation split "
    "(selection.md lists them); `set` = the run's config gave this method's hyperparameters (a preset, "
    "`--hparams.<method>.<name>` or a sweep); `default` = its built-in values, which for the "
    "regularisers are a measured working range, not a tuned optimum (methods without "
    "hyperparameters, e.g. finetune, are always `default`).\n"
    "- **status**: `failed` when any seed's run failed (seeds in failed_seeds); failed rows are left "
    "out of every number.\n"
    "- **cost** (from the runs' manifest.json): trainable parameters, mean train seconds per stage, "
    "training images per second, peak host memory (the process's high-water mark, MiB) and peak "
    "device memory (CUDA, MiB); n/a where the runs did not record it.\n"
)
COST_LABELS = {
    "trainable_params": "trainable params",
    "train_s_per_stage": "train s/stage",
    "images_per_s": "images/s",
    "peak_host_mb": "peak host MiB",
    "peak_device_mb": "peak device MiB",
}


# ---------------------------------------------------------------- markdown and HTML


def _number(value: float, digits: int = 1, sign: bool = False) -> str:
    """``value`` rounded; a value that rounds to zero is written without a minus sign (never -0.0)."""
    text = f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"
    if float(text) == 0:
        text = f"{0.0:+.{digits}f}" if sign else f"{0.0:.{digits}f}"
    return text


def _with_ci(value: float, low: float, high: float, digits: int = 1, sign: bool = False) -> str:
    """``value [low, high]``, or the value alone where there is no interval (one seed)."""
    if np.isnan(value):
        return "n/a"
    text = _number(value, digits, sign)
    return text if np.isnan(low) or np.isnan(high) else f"{text} [{_number(low, digits)}, {_number(high, digits)}]"


def _mean_std_text(mean: float, std: float, n_seeds: int, low: float = np.nan, high: float = np.nan) -> str:
    """Mean, std and CI as text; the mean alone for one seed, whose std of 0 would suggest a measured spread."""
    if np.isnan(mean):
        return "n/a"
    text = f"{_number(mean)} ± {_number(std)}" if n_seeds > 1 and not np.isnan(std) else _number(mean)
    return text if np.isnan(low) or np.isnan(high) else f"{text} [{_number(low)}, {_number(high)}]"


def _rank_text(rank: Any) -> str:
    return "" if pd.isna(rank) else str(int(rank))


def _sort_key(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def display_cells(board: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """Headers and, per row, (shown text, sort key) cells shared by the markdown and HTML tables.

    Sort keys are the raw numbers (empty for missing), so the HTML sorts by mean, not by text.
    """
    baseline = str(board["baseline"].iloc[0]) if len(board) else ""
    headers = ["method", "status", "hparams", "n_seeds"]
    for metric in metrics_of(board):
        headers.append(f"{metric.label} (mean ± std [95% CI])")
        headers += [f"{metric.label} rank"] if metric.rank_column else []
        headers += [f"{metric.label} vs best", f"{metric.label} IQM", f"{metric.label} Δ vs {baseline}"]
        headers.append(f"{metric.label} P(> {baseline})")
    headers += [COST_LABELS[column] for column in COST_COLUMNS if column in board.columns]
    headers.append("failed_seeds")
    return headers, [_row_cells(entry, baseline, metrics_of(board)) for _, entry in board.iterrows()]


def headline_cells(board: pd.DataFrame) -> tuple[list[str], list[list[tuple[str, str]]]]:
    """The compact table: method, seeds and each metric's mean ± std [CI] (the headline columns)."""
    headers, rows = display_cells(board)
    keep = [0, 3] + [i for i, header in enumerate(headers) if header.endswith("(mean ± std [95% CI])")]
    return [headers[i] for i in keep], [[cells[i] for i in keep] for cells in rows]


def _labelled(text: str, labelled: bool) -> str:
    return f"{text} ({FEW_SEEDS_LABEL})" if labelled and text.endswith("]") else text


def _row_cells(entry: pd.Series, baseline: str, board_metrics) -> list[tuple[str, str]]:
    cells = [(str(entry[name]), str(entry[name])) for name in ("method", "status", "hparams", "n_seeds")]
    few = str(entry.get("few_seeds", "") or "").split() if not pd.isna(entry.get("few_seeds", "")) else []
    for metric in board_metrics:
        c = metric.column
        mean = float(entry[c])
        stats = {suffix: float(entry[f"{c}_{suffix}"]) for suffix in STAT_SUFFIXES}
        text = _mean_std_text(mean, float(entry[f"{c}_std"]), int(entry["n_seeds"]), stats["ci_low"], stats["ci_high"])
        cells.append((text, _sort_key(mean)))
        if metric.rank_column:
            rank = _rank_text(entry[metric.rank_column])
            cells.append((rank, rank))
        mark = entry[metric.mark_column]
        cells.append((mark, MARK_SORT_KEYS[mark]))
        iqm = _with_ci(stats["iqm"], stats["iqm_ci_low"], stats["iqm_ci_high"])
        cells.append((_labelled(iqm, "iqm" in few), _sort_key(stats["iqm"])))
        if entry["method"] == baseline:
            cells += [("baseline", ""), ("baseline", "")]
            continue
        diff = _with_ci(stats["diff"], stats["diff_ci_low"], stats["diff_ci_high"], sign=True)
        poi = _with_ci(stats["p_improve"], stats["p_improve_ci_low"], stats["p_improve_ci_high"], digits=2)
        cells += [(diff, _sort_key(stats["diff"])), (_labelled(poi, "p_improve" in few), _sort_key(stats["p_improve"]))]
    for column in COST_COLUMNS:
        if column in entry.index:
            value = float(entry[column])
            cells.append((_cost_text(column, value), _sort_key(value)))
    cells.append((entry["failed_seeds"], entry["failed_seeds"]))
    return cells


def _cost_text(column: str, value: float) -> str:
    if np.isnan(value):
        return "n/a"
    if column == "trainable_params":
        return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{int(value):,}"
    return f"{value:.0f}" if column in ("images_per_s", "peak_host_mb", "peak_device_mb") else f"{value:.1f}"


def comparisons_markdown(comparisons: pd.DataFrame) -> str:
    """The paired comparisons, per eval task and aggregated, as a markdown table."""
    if not len(comparisons):
        return ""
    rows = []
    for _, row in comparisons.iterrows():
        diff = _with_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"], sign=True)
        poi = _with_ci(row["p_improve"], row["p_improve_ci_low"], row["p_improve_ci_high"], digits=2)
        rows.append([row["metric"], row["method"], row["task"], diff, poi])
    baseline = comparisons["baseline"].iloc[0]
    columns = ["metric", "method", "eval task", f"Δ vs {baseline} [95% CI]", f"P(> {baseline}) [95% CI]"]
    return reports.markdown_table(pd.DataFrame(rows, columns=columns, dtype=object))


def _run_description(df_long: pd.DataFrame) -> list[str]:
    """Bullet lines naming the sequence and the eval-only tasks."""
    usable = table.usable_rows(df_long)
    sequence, eval_only = table.sequence_tasks(usable), table.eval_only_tasks(usable)
    return [
        f"- Sequence: {' -> '.join(sequence) or '(none)'}",
        f"- Eval-only tasks (dLP / dZS are measured on these): {', '.join(eval_only) or '(none)'}",
    ]


def leaderboard_markdown(
    title: str, df_long: pd.DataFrame, board: pd.DataFrame, comparisons: Optional[pd.DataFrame] = None
) -> str:
    """The text of leaderboard.md: what was run, the caption, the table, the paired
    comparisons per eval task, and the legend."""
    headers, rows = display_cells(board)
    table = pd.DataFrame([[text for text, _ in cells] for cells in rows], columns=headers, dtype=object)
    lines = [f"# Leaderboard: {title}", "", *_run_description(df_long), "", CAPTIONS[scenario_of(board)], ""]
    lines.append(reports.markdown_table(table))
    if comparisons is not None and len(comparisons):
        lines += ["## Paired comparisons, per eval task and over tasks", "", comparisons_markdown(comparisons)]
    return "\n".join([*lines, LEGEND])


HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; max-width: 1360px; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
.provenance { color: #555; font-size: 0.9em; }
.caption { font-weight: 600; }
td:first-child, th:first-child { text-align: left; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
tr.failed td { color: #a00; }
figure { display: block; margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; cursor: zoom-in; }
figure.zoomed { position: fixed; inset: 0; margin: 0; background: rgba(255,255,255,0.97); overflow: auto; z-index: 10; }
figure.zoomed img { max-width: none; cursor: zoom-out; }
figcaption { font-size: 0.95em; color: #333; }
.legend li { margin: 0.2em 0; }
"""

# A figure is shown at the page's width (its text then at least as large as in the file
# scaled to fit); a click shows it at its full size, a second click puts it back.
HTML_ZOOM_SCRIPT = """
document.querySelectorAll("figure img").forEach(function (image) {
  image.addEventListener("click", function () { image.closest("figure").classList.toggle("zoomed"); });
});
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


def _html_table(board: pd.DataFrame, compact: bool = False) -> str:
    """The sortable leaderboard table (``compact``: the headline columns only); each cell
    carries its sort key in ``data-sort``."""
    headers, rows = headline_cells(board) if compact else display_cells(board)
    head = "".join(f"<th>{html.escape(header)}</th>" for header in headers)
    body = []
    for cells, status in zip(rows, board["status"]):
        row_class = ' class="failed"' if status == "failed" else ""
        tds = "".join(f'<td data-sort="{html.escape(key)}">{html.escape(text)}</td>' for text, key in cells)
        body.append(f"<tr{row_class}>{tds}</tr>")
    kind = "headline" if compact else "full"
    return f'<table class="sortable {kind}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _comparisons_html(comparisons: Optional[pd.DataFrame]) -> str:
    if comparisons is None or not len(comparisons):
        return ""
    baseline = html.escape(str(comparisons["baseline"].iloc[0]))
    head = "".join(
        f"<th>{h}</th>"
        for h in ("metric", "method", "eval task", f"Δ vs {baseline} [95% CI]", f"P(&gt; {baseline}) [95% CI]")
    )
    body = []
    for _, row in comparisons.iterrows():
        diff = _with_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"], sign=True)
        poi = _with_ci(row["p_improve"], row["p_improve_ci_low"], row["p_improve_ci_high"], digits=2)
        cells = (row["metric"], row["method"], row["task"], diff, poi)
        body.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in cells) + "</tr>")
    return (
        "<details><summary>Paired comparisons per eval task and over tasks</summary>"
        f'<div class="scroll"><table class="comparisons"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div></details>"
    )


def figure_paths(run_dir: Path, methods: Sequence[str]) -> list[Path]:
    """The run's PNGs worth embedding, in reading order: forgetting curve, dLP heatmaps, accuracy heatmaps.

    Named from the methods on the board, so stale figures of other methods in plots/ are left out.
    """

    plot_dir = Path(run_dir) / rundir.PLOTS_DIR
    names = ["leaderboard_intervals.png", "forgetting_curve.png", "forgetting_panels.png"]
    names += [_plot_name(plot_dir, "dlp_{}.png", method) for method in methods]
    names += [_plot_name(plot_dir, f"heatmap_{{}}_{kind}.png", method) for method in methods for kind in table.KINDS]
    return [plot_dir / name for name in names if (plot_dir / name).is_file()]


def _plot_name(plot_dir: Path, pattern: str, method: str) -> str:
    """The figure of ``method``; for a label a plain run's leaderboard added (``ldifs[alpha=10]``),
    the figure the run drew under the method's own name (``ldifs``)."""
    name = pattern.format(safe_name(method))
    if (plot_dir / name).is_file() or "[" not in method:
        return name
    return pattern.format(safe_name(method.split("[", 1)[0]))


KIND_NAMES = {"head": "task-head", "lp": "linear-probe", "zs": "zero-shot"}


def figure_caption(stem: str, methods: Sequence[str]) -> str:
    """A figure's caption in words, from its file stem and the methods on the board
    (``heatmap_ldifs_alpha_10__lp`` -> "linear-probe accuracy after each stage: ldifs[alpha=10]")."""
    if stem == "leaderboard_intervals":
        return "Every leaderboard number with its 95% bootstrap confidence interval (error bars)"
    if stem == "forgetting_panels":
        return "Forgetting curves, one panel per method against fine-tuning (grey)"
    if stem == "forgetting_curve":
        return "Forgetting curves: mean dLP on tasks not yet trained, and average head accuracy, per stage"
    for method in sorted(methods, key=len, reverse=True):  # the longest match: ldifs+replay before ldifs
        names = {safe_name(method), safe_name(method.split("[", 1)[0])}
        if stem in {f"dlp_{name}" for name in names}:
            return f"dLP (linear-probe accuracy change from the pre-trained model) after each stage: {method}"
        for kind, words in KIND_NAMES.items():
            if stem in {f"heatmap_{name}_{kind}" for name in names}:
                return f"{words} accuracy on every task after each stage: {method}"
    return stem


def _html_figure(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = html.escape(caption)
    return (
        f'<figure><img alt="{caption}" title="click to enlarge" src="data:image/png;base64,{data}">'
        f"<figcaption>{caption} (click to enlarge)</figcaption></figure>"
    )


def provenance(out_dir: Path) -> list[tuple[str, str]]:
    """What the page says about where its numbers come from: date, commit, machine, command,
    the runs a merge pooled, and selection.md when a sweep chose settings (from manifest.json)."""
    import datetime
    import json

    out_dir = Path(out_dir)
    try:
        manifest = json.loads((out_dir / rundir.MANIFEST_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        manifest = {}
    manifest = manifest if isinstance(manifest, dict) else {}
    written = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    items = [("written", manifest.get("finished_utc") or written)]
    command = manifest.get("command")
    fields = {
        "commit": manifest.get("git_revision"),
        "machine": " ".join(str(v) for v in (manifest.get("machine"), manifest.get("device_name")) if v),
        "command": " ".join(map(str, command)) if isinstance(command, list) else command,
        "merged from": ", ".join(map(str, manifest.get("merged_from") or [])),
    }
    items += [(key, str(value)) for key, value in fields.items() if value]
    return items


def _provenance_html(out_dir: Path) -> str:
    items = "".join(f"<li><b>{html.escape(key)}</b>: {html.escape(value)}</li>" for key, value in provenance(out_dir))
    if (Path(out_dir) / "selection.md").is_file():  # a sweep's choice of settings, beside this page
        items += '<li><b>selection</b>: <a href="selection.md">selection.md</a> (how each setting was chosen)</li>'
    items += drift_links_html(out_dir)  # feature_drift.csv and its figures, when the run measured it
    return f'<ul class="provenance">{items}</ul>'


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


def leaderboard_html(
    title: str,
    df_long: pd.DataFrame,
    board: pd.DataFrame,
    figures: Sequence[Path],
    about: str = "",
    comparisons: Optional[pd.DataFrame] = None,
) -> str:
    """A single HTML file with everything inline: CSS, the sort script and the figures as data
    URIs, captioned in words; ``about``: the provenance list (:func:`provenance`). The
    headline columns come first, in a compact table that fits the page; the full table and
    the per-task comparisons open on a click."""
    description = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in _run_description(df_long))
    methods = list(board["method"])
    figures_html = "".join(_html_figure(path, figure_caption(path.stem, methods)) for path in figures)
    figures_html = figures_html or "<p>(no figures in plots/)</p>"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Leaderboard: {html.escape(title)}</title><style>{HTML_STYLE}</style></head>\n<body>"
        f"<h1>Leaderboard: {html.escape(title)}</h1>{about}<ul>{description}</ul>"
        f'<p class="caption">{html.escape(CAPTIONS[scenario_of(board)])}</p><p>Click a column header to sort.</p>'
        f"{_html_table(board, compact=True)}"
        f'<details><summary>Full table (ranks, IQM, Δ, P(&gt;), cost)</summary><div class="scroll">'
        f"{_html_table(board)}</div></details>{_comparisons_html(comparisons)}{_legend_html()}"
        f"<h2>Figures</h2>{figures_html}<script>{HTML_SORT_SCRIPT}{HTML_ZOOM_SCRIPT}</script></body></html>\n"
    )


# ---------------------------------------------------------------- one run


def write_leaderboard_files(
    out_dir: Path,
    df_long: pd.DataFrame,
    failed_runs: Iterable[tuple[str, int]] = (),
    hparams: Optional[dict[str, Any]] = None,
    hparams_labels: Optional[dict[str, str]] = None,
    baseline: Optional[str] = None,
    scenario: Optional[str] = None,
    costs: Optional[dict[str, dict[str, float]]] = None,
) -> list[Path]:
    """Write leaderboard.csv, .md, .html and .tex and leaderboard_comparisons.csv into out_dir
    (figures from out_dir/plots); return the paths. ``scenario`` and ``costs``: from
    out_dir/manifest.json when not given."""
    from benchmark.reporting.leaderboard_latex import leaderboard_latex

    out_dir = Path(out_dir)
    scenario = scenario or read_scenario(out_dir)
    costs = costs if costs is not None else costs_of_runs(read_manifest_stages(out_dir))
    board = build_leaderboard(df_long, failed_runs, hparams, hparams_labels, baseline, scenario, costs)
    comparisons = comparison_table(df_long, board) if len(board) else None
    title = run_title(out_dir)
    paths = [out_dir / LEADERBOARD_CSV, out_dir / LEADERBOARD_MD, out_dir / LEADERBOARD_HTML]
    paths += [out_dir / LEADERBOARD_TEX, out_dir / COMPARISONS_CSV]
    atomic_text(paths[0], board.to_csv(index=False))
    atomic_text(paths[1], leaderboard_markdown(title, df_long, board, comparisons))
    if (out_dir / rundir.PLOTS_DIR).is_dir() and len(board):  # plots were drawn (not --no-plots)
        _plot_intervals(board, out_dir / rundir.PLOTS_DIR)
    figures = figure_paths(out_dir, list(board["method"]))
    atomic_text(paths[2], leaderboard_html(title, df_long, board, figures, _provenance_html(out_dir), comparisons))
    atomic_text(paths[3], leaderboard_latex(title, board))
    atomic_text(paths[4], (comparisons if comparisons is not None else pd.DataFrame()).to_csv(index=False))
    return paths


LEADERBOARD_TEX = "leaderboard.tex"
COMPARISONS_CSV = "leaderboard_comparisons.csv"


def _plot_intervals(board: pd.DataFrame, plot_dir: Path) -> list[Path]:
    """plots/leaderboard_intervals.png/.svg: every board metric's means with CI error bars."""
    from benchmark.reporting.plots import plot_intervals

    panels = {
        metric.label: tuple(board[f"{metric.column}{suffix}"].to_numpy(float) for suffix in ("", "_ci_low", "_ci_high"))
        for metric in metrics_of(board)
        if board[metric.column].notna().any()
    }
    return plot_intervals(list(board["method"]), panels, plot_dir) if panels else []


def write_leaderboard(run_dir: Path) -> list[Path]:
    """Build the leaderboard of one run from its accuracy_long.csv (and manifest.json) and write it there."""
    run_dir = Path(run_dir)
    hparams = _config_hparams(run_dir / CONFIG_YAML)
    df_long = label_methods(table.load_long_csv(run_dir / rundir.LONG_CSV), hparams)
    failed = {(method_label(method, hparams), seed) for method, seed in failed_runs_of(read_manifest_runs(run_dir))}
    stages = [{**run, "method": method_label(run["method"], hparams)} for run in read_manifest_stages(run_dir)]
    return write_leaderboard_files(run_dir, df_long, failed, hparams, costs=costs_of_runs(stages))


def _config_hparams(path: Path) -> Optional[dict[str, Any]]:
    """The ``hparams`` section of a run's config.yaml; None when there is no readable config."""
    if not path.is_file():
        return None
    try:
        config = load_yaml_file(path, "run config")  # the suite's one safe reader
    except UserError:
        return None
    return dict(config.get("hparams") or {}) if isinstance(config, dict) else None


# ---------------------------------------------------------------- the terminal


def read_board(out_dir: Path) -> pd.DataFrame:
    """leaderboard.csv as built (marks such as "n/a" kept as text, empty fields as NaN or "")."""
    board = pd.read_csv(Path(out_dir) / LEADERBOARD_CSV, keep_default_na=False, na_values=[""])
    for column in ("hparams", "failed_seeds", "few_seeds", "baseline", "status"):
        if column in board.columns:
            board[column] = board[column].fillna("").astype(str)
    return board


def terminal_text(board: pd.DataFrame, comparisons: Optional[pd.DataFrame]) -> str:
    """The headline table and the paired differences over tasks, as plain aligned text."""
    headers, rows = headline_cells(board)
    lines = [CAPTIONS[scenario_of(board)], *_aligned(headers, [[text for text, _ in cells] for cells in rows])]
    if comparisons is not None and len(comparisons):
        over = comparisons[comparisons["task"] == "mean over tasks"]
        baseline = str(comparisons["baseline"].iloc[0])
        table_rows = [
            [
                row["metric"],
                row["method"],
                _with_ci(row["diff"], row["diff_ci_low"], row["diff_ci_high"], sign=True),
                _with_ci(row["p_improve"], row["p_improve_ci_low"], row["p_improve_ci_high"], digits=2),
            ]
            for _, row in over.iterrows()
        ]
        lines += ["", f"paired differences with {baseline} (per eval task: {COMPARISONS_CSV})"]
        lines += _aligned(["metric", "method", f"Δ vs {baseline} [95% CI]", f"P(> {baseline})"], table_rows)
    return "\n".join(lines)


def _aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows)]
    return [
        "  ".join(f"{str(cell):{width}s}" for cell, width in zip(line, widths)).rstrip() for line in [headers, *rows]
    ]


def print_board(out_dir: Path) -> None:
    """Print a written leaderboard's headline table and paired differences."""
    out_dir = Path(out_dir)
    comparisons_path = out_dir / COMPARISONS_CSV
    try:
        comparisons = pd.read_csv(comparisons_path) if comparisons_path.stat().st_size > 1 else None
    except (OSError, pd.errors.EmptyDataError):
        comparisons = None
    print(terminal_text(read_board(out_dir), comparisons))
