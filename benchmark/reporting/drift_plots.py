"""Figures of a run's per-layer feature drift, drawn from ``feature_drift.csv`` only (the
style of ``plots.py``: headless ``Figure`` objects, PNG and SVG written atomically).

- ``drift_cka_<method>``: per method, one layers x stages heatmap per evaluated task of the
  linear CKA to the pre-trained encoder (eval-only tasks marked *, as in the accuracy heatmaps);
- ``drift_last_stage``: small multiples, one panel per evaluated task, every method's CKA to
  the pre-trained encoder (top row) and LDIFS distance to it (bottom row) per layer after the
  last stage.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from benchmark.reporting.drift_table import drift_matrix, layers_in_order, load_drift_csv, stage_tasks
from benchmark.reporting.plots import _plot_mean_band, _save, method_style, text_colour
from benchmark.rundir import FEATURE_DRIFT_CSV, PLOTS_DIR, safe_name

HEATMAP_MEASURE = "cka_pretrained"


def _tasks_and_titles(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    sequence, eval_only = stage_tasks(df)
    return sequence + eval_only, sequence + [f"{task}*" for task in eval_only]


def _grid(panels: int, width: int = 6) -> tuple[int, int]:
    columns = max(1, min(width, panels))
    return -(-panels // columns), columns


def _panels(
    rows: int, columns: int, panel: tuple[float, float], margins: tuple[float, float, float, float], gaps=(0.15, 0.5)
) -> tuple[Figure, np.ndarray]:
    """A figure of ``rows x columns`` panels of ``panel`` inches, ``margins`` (left, right, top,
    bottom) and ``gaps`` (between columns, between rows) in inches: fixed sizes instead of the
    constrained layout, which measured every label again and doubled the drawing time."""
    left, right, top, bottom = margins
    width = left + right + columns * panel[0] + (columns - 1) * gaps[0]
    height = top + bottom + rows * panel[1] + (rows - 1) * gaps[1]
    fig = Figure(figsize=(width, height))
    fig.subplots_adjust(
        left=left / width,
        right=1 - right / width,
        top=1 - top / height,
        bottom=bottom / height,
        wspace=gaps[0] / panel[0],
        hspace=gaps[1] / panel[1],
    )
    return fig, fig.subplots(rows, columns, sharex=True, sharey="row", squeeze=False)


def plot_cka_heatmaps(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per method: ``drift_cka_<method>``, a layers x stages heatmap of linear CKA to the
    pre-trained encoder for every evaluated task, seed-averaged, on one colour scale per run."""
    tasks, titles = _tasks_and_titles(df)
    layers = layers_in_order(df)
    stages = list(range(int(df["stage"].max()) + 1))
    cka = df[df["measure"] == HEATMAP_MEASURE]
    # one scale for every method of the run (as the dLP heatmaps), so two methods compare by eye
    low = min(0.9, float(np.floor(min(1.0, float(cka["value"].min()) if len(cka) else 1.0) * 10) / 10))
    rows, columns = _grid(len(tasks))
    panel = (0.45 * len(stages) + 0.2, 0.3 * len(layers) + 0.2)
    paths = []
    for method in pd.unique(cka["method"]):
        fig, grid = _panels(rows, columns, panel, (0.9, 1.0, 0.85, 0.55), gaps=(0.12, 0.4))
        axes = grid.ravel()
        image, seeds = None, 0
        for ax, task, title in zip(axes, tasks, titles):
            mean, _, seeds = drift_matrix(df, method, HEATMAP_MEASURE, task)
            values = mean.to_numpy(float)
            image = ax.imshow(np.ma.masked_invalid(values), cmap="viridis", vmin=low, vmax=1.0, aspect="auto")
            for (row, col), value in np.ndenumerate(values):
                if not np.isnan(value):
                    colour = text_colour(image.cmap(image.norm(value)))
                    ax.text(col, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=colour)
            ax.set_xticks(range(len(stages)), [str(s) for s in stages])
            ax.set_yticks(range(len(layers)), layers)
            ax.set_title(title, fontsize=9)
        for ax in axes[len(tasks) :]:
            ax.set_visible(False)
        if image is not None:
            top, bottom = axes[0].get_position(), axes[(rows - 1) * columns].get_position()
            cax = fig.add_axes(
                (top.x0 + columns * (top.x1 - top.x0) * 1.06 + 0.02, bottom.y0, 0.015, top.y1 - bottom.y0)
            )
            fig.colorbar(image, cax=cax, label="linear CKA to pre-trained")
        fig.supxlabel("after stage (0 = pre-trained)", fontsize=9, y=0.02)
        fig.supylabel("tapped layer (shallow to deep)", fontsize=9, x=0.01)
        fig.suptitle(
            f"{method}: linear CKA of each layer's features to the pre-trained encoder's, per evaluated task\n"
            f"(* = eval-only, never trained; mean of {seeds} seed(s); 1 = unchanged)",
            fontsize=9,
        )
        paths += _save(fig, out_dir, f"drift_cka_{safe_name(str(method))}", tight=False)  # laid out in inches
    return paths


def _last_stage_curves(df: pd.DataFrame, method: str, measure: str, task: str, layers: list[str]) -> np.ndarray:
    """[seeds, layers]: each seed's values of ``measure`` on ``task`` at its last measured stage."""
    rows = df[(df["method"] == method) & (df["measure"] == measure) & (df["eval_task"] == task)]
    curves = []
    for _, seed_rows in rows.groupby("seed"):
        last = seed_rows[seed_rows["stage"] == seed_rows["stage"].max()]
        curves.append(last.set_index("layer")["value"].reindex(layers).to_numpy(float))
    return np.array(curves)


def plot_last_stage_panels(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """``drift_last_stage``: one column per evaluated task; top, CKA to the pre-trained encoder
    per layer after the last stage, one line per method (mean, band = ± std over seeds);
    bottom, the LDIFS distance to it."""
    tasks, titles = _tasks_and_titles(df)
    layers = layers_in_order(df)
    methods = [str(m) for m in pd.unique(df["method"])]
    x = np.arange(len(layers))
    fig, axes = _panels(2, len(tasks), (2.5, 2.0), (0.9, 1.4, 0.5, 0.7), gaps=(0.15, 0.25))
    for column, (task, title) in enumerate(zip(tasks, titles)):
        for row, measure in enumerate(("cka_pretrained", "dist_pretrained")):
            ax = axes[row, column]
            for method in methods:
                curves = _last_stage_curves(df, method, measure, task, layers)
                if len(curves):
                    _plot_mean_band(ax, x, curves, {**method_style(method), "label": method})
            ax.grid(alpha=0.3)
            ax.set_xticks(x, layers, rotation=45, ha="right", fontsize=7)
        distances = df.loc[(df["measure"] == "dist_pretrained") & (df["value"] > 0), "value"]
        if len(distances):  # deep layers' distances are orders of magnitude smaller (1 / channels)
            axes[1, column].set_yscale("symlog", linthresh=float(distances.min()))
        axes[0, column].set_title(title, fontsize=9)
    axes[0, 0].set_ylabel("linear CKA to pre-trained")
    axes[1, 0].set_ylabel("LDIFS distance to pre-trained")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="upper right", fontsize=8)
    fig.suptitle(
        f"each layer after the last stage ({int(df['stage'].max())}), per evaluated task (* = eval-only); "
        "band = mean ± std over seeds",
        fontsize=9,
    )
    return _save(fig, out_dir, "drift_last_stage", tight=False)


def plot_feature_drift(run_dir: Path) -> list[Path]:
    """Every drift figure of a run into its plots/ folder; none when it has no feature_drift.csv
    (``eval.drift_images=0``, or a run older than the measurement)."""
    path = Path(run_dir) / FEATURE_DRIFT_CSV
    if not path.is_file():
        return []
    df = load_drift_csv(path)
    if not len(df):
        return []
    out_dir = Path(run_dir) / PLOTS_DIR
    return [*plot_last_stage_panels(df, out_dir), *plot_cka_heatmaps(df, out_dir)]
