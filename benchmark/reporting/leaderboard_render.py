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
from benchmark.reporting.leaderboard_build import (
    BOARD_METRICS,
    MARK_SORT_KEYS,
    STAT_SUFFIXES,
    build_leaderboard,
    failed_runs_of,
    label_methods,
    method_label,
    read_manifest_runs,
)
from benchmark.rundir import CONFIG_YAML, LEADERBOARD_CSV, LEADERBOARD_HTML, LEADERBOARD_MD, run_title, safe_name

LEGEND = (
    "- **last head acc**: task-head accuracy (%) after the final stage, averaged over the sequence's "
    "trained tasks (`last` in summary.csv).\n"
    "- **dLP / dZS**: linear-probe / zero-shot accuracy after the final stage minus the pre-trained "
    "model's, averaged over the eval-only tasks (never trained). Negative = concepts forgotten; "
    "higher is better. n/a when the run has no eval-only task or did not evaluate that kind.\n"
    "- **±**: population std over seeds (ddof 0, as in summary.csv); none for one seed.\n"
    "- **[low, high]**: 95% percentile-bootstrap confidence interval over seeds, stratified by task "
    "(each task's seeds resampled on their own, 2000 resamples, fixed seed; scipy.stats.bootstrap, "
    "as rliable does); none for one seed. docs/statistics.md explains every statistic.\n"
    "- **IQM**: interquartile mean of all seed x task values (the middle 50%), robust to one bad seed, "
    "with its stratified bootstrap CI.\n"
    "- **Δ vs baseline**: this method's mean minus the baseline's, with its CI (seed by seed when both "
    "ran the same seeds, else resampled independently); a CI that excludes 0 is a difference the "
    "seeds support. **P(>)**: probability of improvement, P(a run of this method beats a run of "
    "the baseline) per task (ties count half), averaged over tasks, with its CI.\n"
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
)


# ---------------------------------------------------------------- markdown and HTML


def _number(value: float, digits: int = 1, sign: bool = False) -> str:
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


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
    text = f"{mean:.1f} ± {std:.1f}" if n_seeds > 1 and not np.isnan(std) else f"{mean:.1f}"
    return text if np.isnan(low) or np.isnan(high) else f"{text} [{low:.1f}, {high:.1f}]"


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
    for metric in BOARD_METRICS:
        headers.append(f"{metric.label} (mean ± std [95% CI])")
        headers += [f"{metric.label} rank"] if metric.rank_column else []
        headers += [f"{metric.label} vs best", f"{metric.label} IQM", f"{metric.label} Δ vs {baseline}"]
        headers.append(f"{metric.label} P(> {baseline})")
    headers.append("failed_seeds")
    return headers, [_row_cells(entry, baseline) for _, entry in board.iterrows()]


def _row_cells(entry: pd.Series, baseline: str) -> list[tuple[str, str]]:
    cells = [(str(entry[name]), str(entry[name])) for name in ("method", "status", "hparams", "n_seeds")]
    for metric in BOARD_METRICS:
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
        cells.append((_with_ci(stats["iqm"], stats["iqm_ci_low"], stats["iqm_ci_high"]), _sort_key(stats["iqm"])))
        if entry["method"] == baseline:
            cells += [("baseline", ""), ("baseline", "")]
            continue
        diff = _with_ci(stats["diff"], stats["diff_ci_low"], stats["diff_ci_high"], sign=True)
        poi = _with_ci(stats["p_improve"], stats["p_improve_ci_low"], stats["p_improve_ci_high"], digits=2)
        cells += [(diff, _sort_key(stats["diff"])), (poi, _sort_key(stats["p_improve"]))]
    cells.append((entry["failed_seeds"], entry["failed_seeds"]))
    return cells


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
td { white-space: nowrap; }
.scroll { overflow-x: auto; }
.provenance { color: #555; font-size: 0.9em; }
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
        f'<figure><img alt="{caption}" src="data:image/png;base64,{data}"><figcaption>{caption}</figcaption></figure>'
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
    title: str, df_long: pd.DataFrame, board: pd.DataFrame, figures: Sequence[Path], about: str = ""
) -> str:
    """A single HTML file with everything inline: CSS, the sort script and the figures as data
    URIs, captioned in words; ``about``: the provenance list (:func:`provenance`)."""
    description = "".join(f"<li>{html.escape(line.removeprefix('- '))}</li>" for line in _run_description(df_long))
    methods = list(board["method"])
    figures_html = "".join(_html_figure(path, figure_caption(path.stem, methods)) for path in figures)
    figures_html = figures_html or "<p>(no figures in plots/)</p>"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>Leaderboard: {html.escape(title)}</title><style>{HTML_STYLE}</style></head>\n<body>"
        f"<h1>Leaderboard: {html.escape(title)}</h1>{about}<ul>{description}</ul>"
        f'<p>Click a column header to sort.</p><div class="scroll">{_html_table(board)}</div>{_legend_html()}'
        f"<h2>Figures</h2>{figures_html}<script>{HTML_SORT_SCRIPT}</script></body></html>\n"
    )


# ---------------------------------------------------------------- one run


def write_leaderboard_files(
    out_dir: Path,
    df_long: pd.DataFrame,
    failed_runs: Iterable[tuple[str, int]] = (),
    hparams: Optional[dict[str, Any]] = None,
    hparams_labels: Optional[dict[str, str]] = None,
    baseline: Optional[str] = None,
) -> list[Path]:
    """Write leaderboard.csv, .md and .html into out_dir (figures from out_dir/plots); return the paths."""
    out_dir = Path(out_dir)
    board = build_leaderboard(df_long, failed_runs, hparams, hparams_labels, baseline)
    title = run_title(out_dir)
    paths = [out_dir / LEADERBOARD_CSV, out_dir / LEADERBOARD_MD, out_dir / LEADERBOARD_HTML]
    atomic_text(paths[0], board.to_csv(index=False))
    atomic_text(paths[1], leaderboard_markdown(title, df_long, board))
    if (out_dir / rundir.PLOTS_DIR).is_dir() and len(board):  # plots were drawn (not --no-plots)
        _plot_intervals(board, out_dir / rundir.PLOTS_DIR)
    figures = figure_paths(out_dir, list(board["method"]))
    atomic_text(paths[2], leaderboard_html(title, df_long, board, figures, _provenance_html(out_dir)))
    return paths


def _plot_intervals(board: pd.DataFrame, plot_dir: Path) -> list[Path]:
    """plots/leaderboard_intervals.png/.svg: every board metric's means with CI error bars."""
    from benchmark.reporting.plots import plot_intervals

    panels = {
        metric.label: tuple(board[f"{metric.column}{suffix}"].to_numpy(float) for suffix in ("", "_ci_low", "_ci_high"))
        for metric in BOARD_METRICS
        if board[metric.column].notna().any()
    }
    return plot_intervals(list(board["method"]), panels, plot_dir) if panels else []


def write_leaderboard(run_dir: Path) -> list[Path]:
    """Build the leaderboard of one run from its accuracy_long.csv (and manifest.json) and write it there."""
    run_dir = Path(run_dir)
    hparams = _config_hparams(run_dir / CONFIG_YAML)
    df_long = label_methods(table.load_long_csv(run_dir / rundir.LONG_CSV), hparams)
    failed = {(method_label(method, hparams), seed) for method, seed in failed_runs_of(read_manifest_runs(run_dir))}
    return write_leaderboard_files(run_dir, df_long, failed, hparams)


def _config_hparams(path: Path) -> Optional[dict[str, Any]]:
    """The ``hparams`` section of a run's config.yaml; None when there is no readable config."""
    if not path.is_file():
        return None
    try:
        config = load_yaml_file(path, "run config")  # the suite's one safe reader
    except UserError:
        return None
    return dict(config.get("hparams") or {}) if isinstance(config, dict) else None
