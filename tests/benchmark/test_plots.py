"""Figures: fixed method colours, readable annotations, one dLP scale per run, seed bands."""

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from benchmark.reporting import plots


def test_method_colours_are_fixed_per_name():
    assert plots.method_style("ldifs") == plots.method_style("ldifs")
    pinned = [plots.method_style(name)["color"] for name in plots.PINNED_COLOURS]
    assert len(set(pinned)) == len(pinned)  # every built-in its own colour
    hashed = plots.method_style("ldifs+replay")
    assert hashed == plots.method_style("ldifs+replay")  # a stable hash, not Python's salted one
    assert hashed["color"] not in pinned
    setting = plots.method_style("ldifs[ldifs.alpha=700]")  # a sweep's setting keeps its method's colour
    assert setting["color"] == plots.method_style("ldifs")["color"]
    assert setting == plots.method_style("ldifs[ldifs.alpha=700]")
    # the value itself, so a change of the hash (colours moving between runs) fails here
    assert hashed["color"] == plots.PALETTE(plots.FREE_COLOURS[_sha_index("ldifs+replay")])


def _sha_index(name: str) -> int:
    import hashlib

    digest = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")
    return digest % len(plots.FREE_COLOURS)


def test_annotation_text_follows_cell_luminance():
    viridis, rdbu = colormaps["viridis"], colormaps["RdBu"]
    assert plots.text_colour(viridis(1.0)) == "black"  # yellow: the old code wrote white here
    assert plots.text_colour(viridis(0.0)) == "white"  # dark purple
    assert plots.text_colour(rdbu(0.5)) == "black"  # white centre of the diverging map
    assert plots.text_colour(rdbu(0.0)) == "white" and plots.text_colour(rdbu(1.0)) == "white"


def two_method_frame() -> pd.DataFrame:
    rows = []
    for method, drop in (("finetune", 30.0), ("ldifs", 10.0)):
        for stage, trained in ((0, "pretrained"), (1, "shapes")):
            rows.append((method, 0, stage, trained, "shapes", "lp", 50.0 + 40 * stage))
            rows.append((method, 0, stage, trained, "colours", "lp", 80.0 - drop * stage))
    return pd.DataFrame(rows, columns=["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy"])


def test_dlp_heatmaps_share_one_symmetric_scale(tmp_path, monkeypatch):
    limits = []
    draw = plots._draw_matrix

    def spy(ax, matrix, rows, cols, divider, cmap, vmin, vmax, signed=False):
        limits.append((vmin, vmax))
        return draw(ax, matrix, rows, cols, divider, cmap, vmin, vmax, signed)

    monkeypatch.setattr(plots, "_draw_matrix", spy)
    plots.plot_concept_forgetting_heatmaps(two_method_frame(), tmp_path)
    assert limits == [(-40.0, 40.0), (-40.0, 40.0)]  # the largest |dLP| of the run (shapes +40)


def test_curves_get_a_band_only_with_several_seeds():
    x = np.arange(3)
    style = {**plots.method_style("finetune"), "label": "finetune"}
    ax = Figure().subplots()
    plots._plot_mean_band(ax, x, np.array([[0.0, 1.0, 2.0]]), style)
    assert len(ax.collections) == 0
    plots._plot_mean_band(ax, x, np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]]), style)
    band = ax.collections[0].get_paths()[0].vertices
    assert np.isclose(band[:, 1].min(), 0.0) and np.isclose(band[:, 1].max(), 4.0)  # mean 1..3 +- std 1
    np.testing.assert_allclose(ax.lines[-1].get_ydata(), [1.0, 2.0, 3.0])


def test_interval_figure_is_byte_identical_across_draws_and_leaves_rcparams_alone(tmp_path):
    import matplotlib

    panels = {"last head acc": (np.array([88.0, 85.0]), np.array([87.0, np.nan]), np.array([89.0, np.nan]))}
    salt = matplotlib.rcParams["svg.hashsalt"]
    for name in "ab":
        (tmp_path / name).mkdir()
    first = plots.plot_intervals(["ldifs", "finetune"], panels, tmp_path / "a")
    second = plots.plot_intervals(["ldifs", "finetune"], panels, tmp_path / "b")
    assert [p.name for p in first] == ["leaderboard_intervals.png", "leaderboard_intervals.svg"]
    assert first[1].read_bytes() == second[1].read_bytes()  # no random ids in the SVG
    assert matplotlib.rcParams["svg.hashsalt"] == salt  # set for the save only
