"""Figures of a run, drawn from the long accuracy DataFrame (read from the CSV) only.

Every function returns the paths it wrote: one PNG (for report.md) and one SVG (for
papers) per figure, each written atomically.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from benchmark.files import atomic_write
from benchmark.reporting import metrics, table
from benchmark.rundir import safe_name

PNG_DPI = 120


# ---------------------------------------------------------------- data helpers


def seed_mean_matrix(
    df: pd.DataFrame,
    method: str,
    kind: str,
    columns: Sequence[str],
    transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> np.ndarray:
    """Mean over seeds of the (optionally transformed) ``[S+1, K]`` accuracy matrices.

    Cells missing in some seeds take the mean of the others; cells missing everywhere stay NaN.
    """
    matrices = []
    for seed in table.seeds_of(df, method, kind):
        matrix = table.accuracy_matrix(df, method, seed, kind, columns)
        matrices.append(transform(matrix) if transform else matrix)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice" for all-NaN cells
        return np.nanmean(np.stack(matrices), axis=0)


def _labels(df: pd.DataFrame) -> tuple[list[str], list[str], list[str], int]:
    """Matrix columns, row labels, column labels (eval-only marked *) and the sequence length."""
    sequence, eval_only = table.sequence_tasks(df), table.eval_only_tasks(df)
    rows = ["0 (pretrained)"] + [f"{stage}: {task}" for stage, task in enumerate(sequence, start=1)]
    return sequence + eval_only, rows, sequence + [f"{task}*" for task in eval_only], len(sequence)


# ---------------------------------------------------------------- drawing helpers


def _save(fig: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Save the figure as PNG and SVG (atomically), close it, and return both paths."""
    png, svg = Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.svg"
    _save_as(fig, png, dpi=PNG_DPI)
    _save_as(fig, svg, metadata={"Date": None})  # no date: a redraw of the same CSV gives the same file
    return [png, svg]


def _save_as(fig: Figure, path: Path, **options: object) -> None:
    """Atomically save the figure in the format named by the path's suffix."""
    atomic_write(
        path,
        lambda stream: fig.savefig(stream, format=path.suffix[1:], bbox_inches="tight", **options),
        binary=True,
    )


def _draw_matrix(
    ax: Axes,
    matrix: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    divider_after: int,
    cmap: str,
    vmin: float,
    vmax: float,
    signed: bool = False,
) -> AxesImage:
    """Annotated heatmap with a vertical divider before the eval-only columns."""
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    middle = (vmin + vmax) / 2
    for (row, col), value in np.ndenumerate(matrix):
        if np.isnan(value):
            continue
        # Dark text on the pale middle of the colormap, white text on its dark ends.
        far_from_middle = abs(value - middle) > 0.3 * (vmax - vmin)
        ax.text(
            col,
            row,
            f"{value:+.1f}" if signed else f"{value:.1f}",
            ha="center",
            va="center",
            fontsize=8,
            color="white" if far_from_middle else "black",
        )
    if divider_after < matrix.shape[1]:
        ax.axvline(divider_after - 0.5, color="black", linewidth=2)
    ax.set_xticks(range(len(col_labels)), col_labels, rotation=30, ha="right")
    ax.set_yticks(range(len(row_labels)), row_labels)
    ax.set_xlabel("evaluated task (* = eval-only, never trained)")
    ax.set_ylabel("after stage")
    return image


def _matrix_figure(columns: int, rows: int) -> tuple[Figure, Axes]:
    # Figure() rather than pyplot: no global figure manager, no backend switch (headless-safe)
    fig = Figure(figsize=(2.6 + 0.9 * columns, 1.6 + 0.5 * rows))
    return fig, fig.subplots()


# ---------------------------------------------------------------- figures


def plot_accuracy_heatmaps(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One heatmap per (method, kind) of the seed-averaged accuracy matrix: heatmap_<method>_<kind>."""
    df = table.usable_rows(df)
    columns, row_labels, col_labels, num_sequence = _labels(df)
    paths = []
    for method in table.methods_in_order(df):
        for kind in table.kinds_in_order(df, method):
            matrix = seed_mean_matrix(df, method, kind, columns)
            fig, ax = _matrix_figure(len(columns), len(row_labels))
            image = _draw_matrix(ax, matrix, row_labels, col_labels, num_sequence, "viridis", 0.0, 100.0)
            fig.colorbar(image, ax=ax, label="accuracy (%)")
            seeds = len(table.seeds_of(df, method, kind))
            ax.set_title(f"{method}: {kind} accuracy (%), mean of {seeds} seed(s)")
            paths += _save(fig, out_dir, f"heatmap_{safe_name(method)}_{kind}")
    return paths


def plot_concept_forgetting_heatmaps(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One heatmap per method of dLP = LP accuracy minus the stage-0 LP accuracy: dlp_<method>."""
    df = table.usable_rows(df)
    columns, row_labels, col_labels, num_sequence = _labels(df)
    paths = []
    for method in table.methods_in_order(df):
        if "lp" not in table.kinds_in_order(df, method):
            continue
        deltas = seed_mean_matrix(df, method, "lp", columns, transform=metrics.concept_forgetting)
        # Symmetric limits keep 0 at the white centre of the diverging map.
        limit = max(1.0, float(np.nanmax(np.abs(deltas), initial=0.0)))
        fig, ax = _matrix_figure(len(columns), len(row_labels))
        image = _draw_matrix(ax, deltas, row_labels, col_labels, num_sequence, "RdBu", -limit, limit, signed=True)
        fig.colorbar(image, ax=ax, label="dLP (points, < 0 = forgotten)")
        seeds = len(table.seeds_of(df, method, "lp"))
        ax.set_title(
            f"{method}: concept forgetting dLP\n(LP accuracy minus the pre-trained model's, mean of {seeds} seed(s))",
            fontsize=10,
        )
        paths += _save(fig, out_dir, f"dlp_{safe_name(method)}")
    return paths


def _seed_mean_curve(
    df: pd.DataFrame, method: str, kind: str, columns: Sequence[str], curve: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Mean over seeds of a per-seed curve computed from the seed's accuracy matrix."""
    seeds = table.seeds_of(df, method, kind)
    curves = [curve(table.accuracy_matrix(df, method, seed, kind, columns)) for seed in seeds]
    return np.mean(curves, axis=0)


def plot_forgetting_curve(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per stage, one line per method: mean dLP over tasks not yet trained, and average head accuracy.

    Left panel: :func:`metrics.mean_over_untrained` of dLP (stage 0 is 0 by definition).
    Right panel: :func:`metrics.average_accuracy` of the task heads over the tasks trained so far.
    """
    df = table.usable_rows(df)
    columns, _, _, num_sequence = _labels(df)
    trained_stage = table.trained_stages(df, columns)
    stages = np.arange(num_sequence + 1)
    fig = Figure(figsize=(11, 4))
    ax_dlp, ax_head = fig.subplots(1, 2)
    for i, method in enumerate(table.methods_in_order(df)):
        kinds = table.kinds_in_order(df, method)
        # 10 colours, then the next line style: 13 methods stay distinguishable
        style = {
            "marker": "os^D"[i // 10 % 4],
            "linestyle": ["-", "--", ":", "-."][i // 10 % 4],
            "color": colormaps["tab10"](i % 10),
            "label": method,
        }
        if "lp" in kinds:
            dlp = _seed_mean_curve(
                df,
                method,
                "lp",
                columns,
                lambda A: metrics.mean_over_untrained(metrics.concept_forgetting(A), trained_stage),
            )
            ax_dlp.plot(stages, dlp, **style)
        if "head" in kinds and num_sequence:
            head = _seed_mean_curve(df, method, "head", columns[:num_sequence], metrics.average_accuracy)
            ax_head.plot(stages[1:], head, **style)
    ax_dlp.axhline(0, color="grey", linewidth=1)
    ax_dlp.set(
        title="Concept forgetting on tasks not yet trained", xlabel="stage", ylabel="mean dLP (points)", xticks=stages
    )
    ax_head.set(title="Average head accuracy over trained tasks", xlabel="stage", ylabel="accuracy (%)", xticks=stages)
    for ax in (ax_dlp, ax_head):
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        ax.grid(alpha=0.3)
    return _save(fig, out_dir, "forgetting_curve")
