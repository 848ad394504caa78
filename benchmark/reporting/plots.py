"""Figures of a run, drawn from the long accuracy DataFrame (read from the CSV) only.

Every function returns the paths it wrote: one PNG (for report.md) and one SVG (for
papers) per figure, each written atomically.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Optional

import matplotlib
import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from benchmark.files import atomic_write
from benchmark.reporting import metrics, table
from benchmark.rundir import safe_name

PNG_DPI = 120

# A fixed colour per method, the same in every figure of every run: the registry's
# built-ins are pinned to tab20 entries; any other name (a plugin, a composition such as
# ldifs+replay) is hashed (stably, not Python's salted hash) onto the remaining entries,
# with a line style and marker from the same hash so two hashed names rarely look alike.
PALETTE = colormaps["tab20"]
PINNED_COLOURS = {
    "zeroshot": 14,  # grey
    "finetune": 0,  # blue
    "ldifs": 6,  # red
    "l2sp": 2,  # orange
    "flyp": 4,  # green
    "wise_ft": 8,  # purple
    "lp_ft": 10,  # brown
    "linear_probe": 15,  # light grey
    "ewc": 12,  # pink
    "lwf": 16,  # olive
    "replay": 18,  # cyan
    "si": 1,  # light blue
    "mas": 3,  # light orange
}
# Any other name (a plugin, a composition) takes a colour of Dark2: saturated colours that
# read on white (tab20's free entries are its pale halves).
HASHED_PALETTE = colormaps["Dark2"]
FREE_COLOURS = [0, 1, 2, 3, 4, 6]  # Dark2 less its gold (faint on white) and grey (zero-shot's)
LINE_STYLES, MARKERS = ("-", "--", "-.", ":"), "os^Dv"


def method_style(method: str) -> dict[str, object]:
    """Colour, line style and marker of ``method``: a function of its name alone. A sweep's
    setting of a built-in method (``ewc[ewc.ewc_lambda=100]``) keeps the method's colour and
    takes its line style and marker from the full label."""
    base = method.split("[", 1)[0]
    digest = int.from_bytes(hashlib.sha256(method.encode()).digest()[:8], "big")
    if base in PINNED_COLOURS:
        if base == method:
            return {"color": PALETTE(PINNED_COLOURS[method]), "linestyle": "-", "marker": "o"}
        return {
            "color": PALETTE(PINNED_COLOURS[base]),
            "linestyle": LINE_STYLES[digest // 7 % len(LINE_STYLES)],
            "marker": MARKERS[digest // 29 % len(MARKERS)],
        }
    return {
        "color": HASHED_PALETTE(FREE_COLOURS[digest % len(FREE_COLOURS)]),
        "linestyle": LINE_STYLES[digest // 7 % len(LINE_STYLES)],
        "marker": MARKERS[digest // 29 % len(MARKERS)],
    }


SHADES = (0.0, -0.45, 0.45, -0.7, 0.7)  # the family's colour, darker, lighter, ...; then repeated
MIN_TEXT_PT = 8  # the smallest text any figure here draws (heatmap cells, legends)


def _shade(colour: object, amount: float) -> tuple[float, float, float, float]:
    """``colour`` mixed with black (amount < 0) or white (amount > 0)."""
    r, g, b, a = to_rgba(colour)  # type: ignore[arg-type]
    target = 1.0 if amount > 0 else 0.0
    mix = abs(amount)
    return (r + (target - r) * mix, g + (target - g) * mix, b + (target - b) * mix, a)


def family_styles(methods: Sequence[str]) -> dict[str, dict[str, object]]:
    """:func:`method_style` of each method, except that the settings of one method on the same
    figure (``ldifs[alpha=10]``, ``ldifs[alpha=100]``) get distinct shades of its colour and
    distinct markers, in the order given."""
    styles = {method: method_style(method) for method in methods}
    families: dict[str, list[str]] = {}
    for method in methods:
        families.setdefault(method.split("[", 1)[0], []).append(method)
    for members in families.values():
        if len(members) < 2:
            continue
        base = method_style(members[0].split("[", 1)[0])["color"]
        for index, method in enumerate(members):
            styles[method] = {
                **styles[method],
                "color": _shade(base, SHADES[index % len(SHADES)]),
                "marker": MARKERS[index % len(MARKERS)],
            }
    return styles


def text_colour(background: object) -> str:
    """Black or white, whichever reads better on ``background`` (WCAG relative luminance)."""
    r, g, b, _ = to_rgba(background)  # type: ignore[arg-type]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"  # the contrast-ratio crossover of black vs white


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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice" for all-NaN cells
        return np.nanmean(_seed_stack(df, method, kind, columns, transform), axis=0)


def seed_std_matrix(
    df: pd.DataFrame,
    method: str,
    kind: str,
    columns: Sequence[str],
    transform: Optional[Callable[[np.ndarray], np.ndarray]] = None,
) -> Optional[np.ndarray]:
    """Population std over seeds of the same matrices (as summary.csv's); None for one seed."""
    stack = _seed_stack(df, method, kind, columns, transform)
    if len(stack) < 2:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "degrees of freedom <= 0" for all-NaN cells
        return np.nanstd(stack, axis=0)


def _seed_stack(df: pd.DataFrame, method: str, kind: str, columns: Sequence[str], transform) -> np.ndarray:
    matrices = []
    for seed in table.seeds_of(df, method, kind):
        matrix = table.accuracy_matrix(df, method, seed, kind, columns)
        matrices.append(transform(matrix) if transform else matrix)
    return np.stack(matrices)


def _labels(df: pd.DataFrame) -> tuple[list[str], list[str], list[str], int]:
    """Matrix columns, row labels, column labels (eval-only marked *) and the sequence length."""
    sequence, eval_only = table.sequence_tasks(df), table.eval_only_tasks(df)
    rows = ["0 (pretrained)"] + [f"{stage}: {task}" for stage, task in enumerate(sequence, start=1)]
    return sequence + eval_only, rows, sequence + [f"{task}*" for task in eval_only], len(sequence)


# ---------------------------------------------------------------- drawing helpers


def _save(fig: Figure, out_dir: Path, stem: str, tight: bool = True) -> list[Path]:
    """Save the figure as PNG and SVG (atomically), close it, and return both paths.
    ``tight``: crop to the drawn content, which draws the figure twice per file; a figure
    laid out in fixed inches (the drift figures) is saved as laid out, in about 2/3 of the time."""
    png, svg = Path(out_dir) / f"{stem}.png", Path(out_dir) / f"{stem}.svg"
    crop = {"bbox_inches": "tight"} if tight else {}
    _save_as(fig, png, dpi=PNG_DPI, **crop)
    _save_as(fig, svg, metadata={"Date": None}, **crop)  # no date: a redraw of the same CSV gives the same file
    return [png, svg]


def _save_as(fig: Figure, path: Path, **options: object) -> None:
    """Atomically save the figure in the format named by the path's suffix. SVG element ids
    are random unless ``svg.hashsalt`` is set: set here, for this save only (an rc context,
    not a process-wide change), so identical figures give identical files."""
    with matplotlib.rc_context({"svg.hashsalt": "ldifs-bench"}):
        atomic_write(
            path,
            lambda stream: fig.savefig(stream, format=path.suffix[1:], **options),  # type: ignore[arg-type]
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
    spread: Optional[np.ndarray] = None,
) -> AxesImage:
    """Annotated heatmap with a vertical divider before the eval-only columns; ``spread``
    (the std over seeds) is written under each mean."""
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
    for (row, col), value in np.ndenumerate(matrix):
        if np.isnan(value):
            continue
        text = f"{value:+.1f}" if signed else f"{value:.1f}"
        if spread is not None and not np.isnan(spread[row, col]):
            text += f"\n±{spread[row, col]:.1f}"
        ax.text(
            col,
            row,
            text,
            ha="center",
            va="center",
            fontsize=8,
            color=text_colour(image.cmap(image.norm(value))),  # readable on this cell's colour
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
            spread = seed_std_matrix(df, method, kind, columns)
            fig, ax = _matrix_figure(len(columns), len(row_labels))
            image = _draw_matrix(ax, matrix, row_labels, col_labels, num_sequence, "viridis", 0.0, 100.0, spread=spread)
            fig.colorbar(image, ax=ax, label="accuracy (%)")
            seeds = len(table.seeds_of(df, method, kind))
            shown = "mean ± std" if spread is not None else "mean"
            ax.set_title(f"{method}: {kind} accuracy (%), {shown} of {seeds} seed(s)")
            paths += _save(fig, out_dir, f"heatmap_{safe_name(method)}_{kind}")
    return paths


def plot_concept_forgetting_heatmaps(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One heatmap per method of dLP = LP accuracy minus the stage-0 LP accuracy: dlp_<method>."""
    df = table.usable_rows(df)
    columns, row_labels, col_labels, num_sequence = _labels(df)
    methods = [method for method in table.methods_in_order(df) if "lp" in table.kinds_in_order(df, method)]
    all_deltas = [seed_mean_matrix(df, m, "lp", columns, transform=metrics.concept_forgetting) for m in methods]
    # One symmetric scale for every method of the run (0 at the white centre of the diverging
    # map), so two methods' heatmaps can be compared by eye.
    limit = max([1.0] + [float(np.nanmax(np.abs(d), initial=0.0)) for d in all_deltas])
    paths = []
    for method, deltas in zip(methods, all_deltas):
        fig, ax = _matrix_figure(len(columns), len(row_labels))
        spread = seed_std_matrix(df, method, "lp", columns, transform=metrics.concept_forgetting)
        image = _draw_matrix(
            ax, deltas, row_labels, col_labels, num_sequence, "RdBu", -limit, limit, signed=True, spread=spread
        )
        fig.colorbar(image, ax=ax, label="dLP (points, < 0 = forgotten)")
        seeds = len(table.seeds_of(df, method, "lp"))
        shown = "mean ± std" if spread is not None else "mean"
        ax.set_title(
            f"{method}: concept forgetting dLP\n(LP accuracy minus the pre-trained model's, {shown} of {seeds} seed(s))",
            fontsize=10,
        )
        paths += _save(fig, out_dir, f"dlp_{safe_name(method)}")
    return paths


def _seed_curves(
    df: pd.DataFrame, method: str, kind: str, columns: Sequence[str], curve: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """[seeds, points]: a per-seed curve computed from each seed's accuracy matrix."""
    seeds = table.seeds_of(df, method, kind)
    return np.array([curve(table.accuracy_matrix(df, method, seed, kind, columns)) for seed in seeds])


def _plot_mean_band(ax: Axes, x: np.ndarray, curves: np.ndarray, style: dict[str, object]) -> None:
    """The seeds' mean as a line and, with several seeds, mean +- std (population, as the
    summary's) as a translucent band of the same colour."""
    mean = curves.mean(axis=0)
    ax.plot(x, mean, **style)  # type: ignore[arg-type]
    if len(curves) > 1:
        std = curves.std(axis=0)
        ax.fill_between(x, mean - std, mean + std, color=style["color"], alpha=0.2, linewidth=0)


def plot_forgetting_curve(df: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Per stage, one line per method: mean dLP over tasks not yet trained, and average head accuracy.

    Left panel: :func:`metrics.mean_over_untrained` of dLP (stage 0 is 0 by definition).
    Right panel: :func:`metrics.average_accuracy` of the task heads over the tasks trained so far.
    """
    df = table.usable_rows(df)
    columns, _, _, num_sequence = _labels(df)
    trained_stage = table.trained_stages(df, columns)
    stages = np.arange(num_sequence + 1)
    fig = Figure(figsize=(13, 4.5), layout="constrained")
    ax_dlp, ax_head = fig.subplots(1, 2)
    finals: dict[str, float] = {}  # each method's last mean dLP: the legend's order
    styles = family_styles(table.methods_in_order(df))
    for method in table.methods_in_order(df):
        kinds = table.kinds_in_order(df, method)
        style = {**styles[method], "label": method}
        if "lp" in kinds:
            dlp = _seed_curves(
                df,
                method,
                "lp",
                columns,
                lambda A: metrics.mean_over_untrained(metrics.concept_forgetting(A), trained_stage),
            )
            _plot_mean_band(ax_dlp, stages, dlp, style)
            finals[method] = dlp.mean(axis=0)[-1] if len(dlp) else np.nan
        if "head" in kinds and num_sequence:
            head = _seed_curves(df, method, "head", columns[:num_sequence], metrics.average_accuracy)
            _plot_mean_band(ax_head, stages[1:], head, style)
    ax_dlp.axhline(0, color="grey", linewidth=1)
    ax_dlp.set(
        title="Concept forgetting on tasks not yet trained",
        xlabel="stage",
        ylabel="mean dLP (points) over the tasks not yet\ntrained at that stage (fewer each stage)",
        xticks=stages,
    )
    seeds = max(len(table.seeds_of(df, m, k)) for m in table.methods_in_order(df) for k in ("head", "lp", "zs"))
    if seeds > 1:
        fig.suptitle(f"mean of {seeds} seeds, band = mean ± std", fontsize=9)
    ax_head.set(title="Average head accuracy over trained tasks", xlabel="stage", ylabel="accuracy (%)", xticks=stages)
    # one legend beside both panels: the methods and their styles are the same in each, and a
    # sweep's dozen settings inside the axes would hide the curves
    legend = dict(zip(*reversed(ax_head.get_legend_handles_labels())))
    legend.update(dict(zip(*reversed(ax_dlp.get_legend_handles_labels()))))
    if legend:  # in the order of the curves' ends (top first), so the legend reads like the plot
        order = sorted(legend, key=lambda label: -_final(finals.get(label)))
        fig.legend([legend[k] for k in order], order, loc="outside right upper", fontsize=8)
    for ax in (ax_dlp, ax_head):
        ax.grid(alpha=0.3)
    return _save(fig, out_dir, "forgetting_curve")


def _final(value: Optional[float]) -> float:
    return -np.inf if value is None or np.isnan(value) else float(value)


def plot_forgetting_panels(df: pd.DataFrame, out_dir: Path, reference: str = "finetune") -> list[Path]:
    """Small multiples: one panel per method, its mean dLP curve (with the seed band) against
    ``reference``'s in grey (fine-tuning, else the first method), all on one y scale: fifteen
    methods stay readable where one panel of fifteen curves is not. Nothing with one method."""
    df = table.usable_rows(df)
    columns, _, _, num_sequence = _labels(df)
    trained_stage = table.trained_stages(df, columns)
    methods = [m for m in table.methods_in_order(df) if "lp" in table.kinds_in_order(df, m)]
    if len(methods) < 2:
        return []
    reference = reference if reference in methods else methods[0]

    def curves(method: str) -> np.ndarray:
        return _seed_curves(
            df,
            method,
            "lp",
            columns,
            lambda A: metrics.mean_over_untrained(metrics.concept_forgetting(A), trained_stage),
        )

    others = [m for m in methods if m != reference]
    width = min(4, len(others))
    rows = -(-len(others) // width)
    fig = Figure(figsize=(3.2 * width, 2.6 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, width, sharex=True, sharey=True, squeeze=False)).ravel()
    stages = np.arange(num_sequence + 1)
    base = curves(reference)
    for ax, method in zip(axes, others):
        _plot_mean_band(ax, stages, base, {"color": "0.6", "linestyle": "-", "marker": None, "label": reference})
        _plot_mean_band(ax, stages, curves(method), {**method_style(method), "label": method})
        ax.axhline(0, color="grey", linewidth=0.8)
        ax.set_title(method, fontsize=9)
        ax.set_xticks(stages)
        ax.grid(alpha=0.3)
    for ax in axes[len(others) :]:
        ax.set_visible(False)
    fig.supxlabel("stage")
    fig.supylabel("mean dLP over tasks not yet trained")
    fig.suptitle(f"each method (colour) against {reference} (grey); band = mean ± std over seeds", fontsize=9)
    return _save(fig, out_dir, "forgetting_panels")


def plot_intervals(
    methods: Sequence[str], panels: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], out_dir: Path
) -> list[Path]:
    """The leaderboard's numbers as points with their 95% intervals as error bars, one panel
    per metric (``panels``: title -> (means, CI lows, CI highs), one entry per method, in the
    leaderboard's order, best first), as rliable's interval plots. A method without an
    interval (one seed) is a point alone. Each panel's axis says its unit; a point far from
    all the others (a zero-shot dLP of 0 beside fine-tuned ones of -80) is drawn at the
    axis's edge as an arrow with its value, so that it does not squash the others."""
    fig = Figure(figsize=(4.5 * len(panels), 1.3 + 0.36 * len(methods)), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    y = np.arange(len(methods))[::-1]  # best at the top
    styles = family_styles(methods)
    for ax, (title, (means, lows, highs)) in zip(axes, panels.items()):
        outlier = _outlier(means, lows, highs)
        for index, (row, method, mean, low, high) in enumerate(zip(y, methods, means, lows, highs)):
            if np.isnan(mean) or index == outlier:
                continue
            style = styles[method]
            error = None if np.isnan(low) else [[mean - low], [high - mean]]
            ax.errorbar(mean, row, xerr=error, fmt=style["marker"], color=style["color"], capsize=3, markersize=6)
        if outlier is not None:
            _draw_outlier(ax, y[outlier], float(means[outlier]), styles[methods[outlier]]["color"])
        unit = "change in accuracy (points)" if title in ("dLP", "dZS") else "accuracy (%)"
        ax.set(title=title, yticks=y, yticklabels=list(methods), xlabel=unit)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle("mean and 95% Student t interval over seeds", fontsize=10)
    return _save(fig, out_dir, "leaderboard_intervals")


def _outlier(means: np.ndarray, lows: np.ndarray, highs: np.ndarray) -> Optional[int]:
    """The one point farther from every other point's interval than 3 times their spread
    (at least 5 points), or None."""
    found = [i for i in range(len(means)) if not np.isnan(means[i])]
    if len(found) < 3:
        return None
    extreme = max(found, key=lambda i: abs(means[i] - np.nanmedian(means)))
    others = [i for i in found if i != extreme]
    values = np.concatenate([means[others], lows[others], highs[others]])
    lo, hi = np.nanmin(values), np.nanmax(values)
    gap = lo - means[extreme] if means[extreme] < lo else means[extreme] - hi
    return extreme if gap > 3 * max(hi - lo, 5.0) else None


def _draw_outlier(ax: Axes, row: float, value: float, colour: object) -> None:
    """The outlier as an arrow at the axis's edge on its side, labelled with its value."""
    left, right = ax.get_xlim()
    ax.set_xlim(left, right)  # the others' range, fixed before the label is placed
    at_right = value > right
    x = right if at_right else left
    ax.annotate(
        f"{value:.1f}",
        xy=(x, row),
        xytext=(-14 if at_right else 14, 0),
        textcoords="offset points",
        ha="right" if at_right else "left",
        va="center",
        fontsize=MIN_TEXT_PT + 1,
        color=colour,
        arrowprops={"arrowstyle": "->", "color": colour},
    )
