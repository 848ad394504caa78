"""Figures: fixed method colours, readable annotations, one dLP scale per run, seed bands."""

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from benchmark.reporting import plots


def test_method_colours_are_fixed_per_name():
    pinned = [plots.method_style(name)["color"] for name in plots.PINNED_COLOURS]
    assert len(set(pinned)) == len(pinned)  # every built-in its own colour
    hashed = plots.method_style("ldifs+replay")
    assert hashed["color"] not in pinned
    setting = plots.method_style("ldifs[ldifs.alpha=700]")  # a sweep's setting keeps its method's colour
    assert setting["color"] == plots.method_style("ldifs")["color"]
    assert setting["linestyle"] != "-" or setting["marker"] != "o"  # ...told apart by its line or marker
    # the value itself (Dark2's orange, dashed, squares), so a change of the hash, colours
    # moving between runs, fails here
    assert hashed == {"color": plots.HASHED_PALETTE(1), "linestyle": "--", "marker": "s"}
    # a plugin's colour reads on white: not one of tab20's pale halves (WCAG luminance well below white's)
    for name in ("my_plugin", "ldifs+replay", "l1sp", "foo", "bar"):
        assert _luminance(name) < 0.55, name


def test_a_methods_style_is_the_same_in_another_process():
    """Not Python's hash(), which is salted per process (PYTHONHASHSEED)."""
    import os
    import subprocess
    import sys

    code = "from benchmark.reporting import plots; print(plots.method_style('ldifs+replay'))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == str(plots.method_style("ldifs+replay"))


def _luminance(name: str) -> float:
    from matplotlib.colors import to_rgb

    return sum(w * c for w, c in zip((0.2126, 0.7152, 0.0722), to_rgb(plots.method_style(name)["color"])))


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

    def spy(ax, matrix, rows, cols, divider, cmap, vmin, vmax, signed=False, spread=None):
        limits.append((vmin, vmax))
        return draw(ax, matrix, rows, cols, divider, cmap, vmin, vmax, signed, spread)

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


def test_heatmaps_show_the_seed_spread_and_panels_compare_each_method_with_finetune(tmp_path):
    df = two_method_frame()
    assert plots.seed_std_matrix(df, "ldifs", "lp", table_columns(df)) is None  # one seed: no spread
    two_seeds = pd.concat([df, df.assign(seed=1, accuracy=df.accuracy + 2.0)])
    spread = plots.seed_std_matrix(two_seeds, "ldifs", "lp", table_columns(df))
    np.testing.assert_allclose(spread, 1.0)  # population std of (a, a + 2)
    paths = plots.plot_forgetting_panels(df, tmp_path)
    assert [p.name for p in paths] == ["forgetting_panels.png", "forgetting_panels.svg"]
    ax = Figure().subplots()
    plots._draw_matrix(ax, np.array([[50.0]]), ["0"], ["a"], 1, "viridis", 0, 100, spread=np.array([[2.5]]))
    assert ax.texts[0].get_text() == "50.0\n±2.5"


def table_columns(df):
    from benchmark.reporting import table

    return table.sequence_tasks(df) + table.eval_only_tasks(df)
