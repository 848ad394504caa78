"""The leaderboard as a paper needs it: the class-incremental ranking, leaderboard.tex, cost
columns from the runs' records, paired comparisons per eval task, the terminal print."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_leaderboard import OUTCOMES, board_row, long_frame, write_run

from benchmark.reporting import leaderboard, summary
from benchmark.reporting.leaderboard_build import AGGREGATE, comparison_table
from benchmark.reporting.leaderboard_latex import escape, leaderboard_latex

GROUPS = ["objects-g1", "objects-g2"]
# Per method: head accuracy on g1 after stage 1, then (g1, g2) after stage 2, equal group sizes.
# Avg = mean(stage 1, mean of stage 2); Last = mean of stage 2.
CIL = {
    "finetune": (90.0, (10.0, 80.0)),  # Avg 67.5, Last 45: first by Avg, last but one by Last
    "replay": (60.0, (40.0, 60.0)),  # Avg 55, Last 50
    "zscl": (70.0, (30.0, 50.0)),  # Avg 55, Last 40: ties replay on Avg, behind it on Last
    "ldifs": (50.0, (30.0, 50.0)),  # Avg 45, Last 40
}


def cil_run(folder: Path) -> Path:
    """A hand-made class-incremental run: two groups, textures eval-only, two seeds (+1, -1)."""
    rows = []
    for method, (first, (g1, g2)) in CIL.items():
        for seed, shift in ((0, 1.0), (1, -1.0)):
            stages = {
                0: {"objects-g1": 5.0, "objects-g2": 5.0},
                1: {"objects-g1": first},
                2: dict(zip(GROUPS, (g1, g2))),
            }
            for stage, accuracies in stages.items():
                trained = "pretrained" if stage == 0 else GROUPS[stage - 1]
                for task, value in accuracies.items():
                    rows.append((method, seed, stage, trained, task, "head", value + shift, 100))
                rows.append((method, seed, stage, trained, "textures", "lp", 60.0 - 5 * stage, 100))
    columns = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy", "n"]
    folder.mkdir(parents=True)
    pd.DataFrame(rows, columns=columns).to_csv(folder / "accuracy_long.csv", index=False)
    runs = [{"method": m, "seed": s, "status": "ok", "stages": []} for m in CIL for s in (0, 1)]
    (folder / "manifest.json").write_text(json.dumps({"scenario": "class_incremental", "runs": runs}))
    return folder


def test_a_class_incremental_board_ranks_by_avg_then_last(tmp_path):
    run_dir = cil_run(tmp_path / "cil")
    leaderboard.write_leaderboard(run_dir)
    board = pd.read_csv(run_dir / "leaderboard.csv")
    assert list(board["method"]) == ["finetune", "replay", "zscl", "ldifs"]
    assert board["inc_avg"].tolist() == pytest.approx([67.5, 55.0, 55.0, 45.0])
    assert board["inc_last"].tolist() == pytest.approx([45.0, 50.0, 40.0, 40.0])
    assert list(board["rank_avg"]) == [1, 2, 2, 4] and "last_head_acc" not in board.columns
    markdown = (run_dir / "leaderboard.md").read_text(encoding="utf-8")
    assert "ranked by Avg (accuracy on all classes seen so far" in markdown
    assert "| Avg (mean ± std [95% CI]) |" in markdown.replace("| method | status | hparams | n_seeds ", "| ")
    assert "ranked by Avg" in (run_dir / "leaderboard.html").read_text(encoding="utf-8")


def test_a_class_incremental_terminal_summary_shows_avg_and_last(tmp_path, capsys):
    run_dir = cil_run(tmp_path / "cil")
    from benchmark.reporting import reports

    reports.summarise(pd.read_csv(run_dir / "accuracy_long.csv")).to_csv(run_dir / "summary.csv", index=False)
    summary.print_headline(run_dir)
    out = capsys.readouterr().out
    assert "Avg (seen classes)" in out and "Last" in out
    assert re.search(r"finetune\s+67\.5\s+45\.0", out)


def _paper_run(tmp_path: Path) -> Path:
    """The hand-made task-incremental run with per-stage cost records in its manifest."""
    run_dir = write_run(tmp_path / "run", OUTCOMES)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    for run in manifest["runs"]:
        run["stages"] = [
            {
                "stage": s,
                "train_seconds": 10.0 * s,
                "train_images": 500,
                "trainable_params": 2_000_000 + s,
                "peak_host_mb": 900.0 + run["seed"],
                "peak_device_mb": 300.0,
            }
            for s in (1, 2)
        ]
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    return run_dir


def test_cost_columns_come_from_the_runs_stage_records(tmp_path):
    run_dir = _paper_run(tmp_path)
    leaderboard.write_leaderboard(run_dir)
    row = board_row(pd.read_csv(run_dir / "leaderboard.csv"), "ldifs")
    # 1000 images in 30 s of training per run; the largest parameter count and memory
    assert row["trainable_params"] == 2_000_002 and row["train_s_per_stage"] == 15.0
    assert row["images_per_s"] == pytest.approx(1000 / 30)
    assert row["peak_host_mb"] == 902.0 and row["peak_device_mb"] == 300.0
    assert "| 2.00M | 15.0 | 33 | 902 | 300 |" in (run_dir / "leaderboard.md").read_text(encoding="utf-8")


def test_leaderboard_tex_has_booktabs_bold_best_and_escaped_names(tmp_path):
    run_dir = _paper_run(tmp_path)
    leaderboard.write_leaderboard(run_dir)
    tex = (run_dir / "leaderboard.tex").read_text(encoding="utf-8")
    for rule in ("\\toprule", "\\midrule", "\\bottomrule", "\\begin{tabular}{lrrrrrrrrrrrr}"):
        assert rule in tex, rule
    assert "\\texttt{ldifs+replay}" in tex and "$\\mathbf{88.0 \\pm 0.0}$" in tex  # best last head acc
    assert "$\\mathbf{-1.0 \\pm 0.8}$" in tex  # best dLP: ldifs
    assert "params (M)" in tex and "2.00" in tex
    assert escape("ldifs[alpha=1e-3]_x%") == "ldifs[alpha=1e-3]\\_x\\%"
    assert "95\\% CI" not in leaderboard_latex("t", leaderboard.build_leaderboard(long_frame()), intervals=False)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (texlive-latex-base)")
def test_leaderboard_tex_compiles(tmp_path):
    run_dir = _paper_run(tmp_path)
    leaderboard.write_leaderboard(run_dir)
    (tmp_path / "paper.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs,graphicx}\\begin{document}"
        f"\\input{{{run_dir / 'leaderboard.tex'}}}\\end{{document}}\n"
    )
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:]
    assert (tmp_path / "paper.pdf").stat().st_size > 1000


def test_comparisons_per_task_and_aggregated_say_the_same_thing(tmp_path):
    """Two eval tasks where ldifs wins one and loses the other: the per-task rows show it, and
    the aggregate row is the board's Δ and P(>), both on the per-seed task averages."""
    df = long_frame()
    board = leaderboard.build_leaderboard(df)
    comparisons = comparison_table(df, board)
    head = comparisons[(comparisons["metric"] == "last head acc") & (comparisons["method"] == "ldifs")]
    assert list(head["task"]) == ["shapes", "digits", AGGREGATE]
    over = head[head["task"] == AGGREGATE].iloc[0]
    ldifs = board_row(board, "ldifs")
    assert over["diff"] == ldifs["last_head_acc_diff"] and over["p_improve"] == ldifs["last_head_acc_p_improve"]
    assert over["diff_ci_low"] == ldifs["last_head_acc_diff_ci_low"]
    # different seed sets (ldifs 0-2, finetune 0-1): Welch, so the per-task rows have intervals too
    assert head["diff_ci_low"].notna().all()


def test_no_negative_zero_and_one_seed_na_only_for_that_method(tmp_path):
    outcomes = {**OUTCOMES, "zeroshot": {0: (10.0, 0.0, 0.0)}, "flat": {0: (87.0, -10.0, -6.0), 1: (87.0, -10.0, -6.0)}}
    board = leaderboard.build_leaderboard(long_frame(outcomes))
    markdown = leaderboard.leaderboard_markdown("t", long_frame(outcomes), board)
    assert "-0.0" not in markdown
    # zeroshot (one seed) is the best dZS: the others are still judged, zeroshot alone is n/a when not best
    assert board_row(board, "zeroshot")["dzs_vs_best"] == "best"
    assert "n/a (1 seed)" not in set(board[board["method"] != "zeroshot"]["dzs_vs_best"])
    assert board_row(board, "zeroshot")["acc_vs_best"] == "n/a (1 seed)"


def test_a_bare_method_name_is_a_baseline_when_one_setting_is_on_the_board():
    df = long_frame()
    df["method"] = df["method"].replace({"ldifs": "ldifs[alpha=100]"})
    board = leaderboard.build_leaderboard(df, baseline="ldifs")
    assert set(board["baseline"]) == {"ldifs[alpha=100]"}
    two = pd.concat([df, long_frame({"ldifs": OUTCOMES["ldifs"]}).replace({"ldifs": "ldifs[alpha=10]"})])
    from benchmark.errors import UserError

    with pytest.raises(UserError, match="has 2 settings here; name one"):
        leaderboard.build_leaderboard(two, baseline="ldifs")


def test_a_merge_prints_the_headline_table_and_the_paired_differences(tmp_path, capsys):
    first = write_run(tmp_path / "a", {"finetune": OUTCOMES["finetune"]})
    second = write_run(tmp_path / "b", {"ldifs": OUTCOMES["ldifs"]})
    assert leaderboard.main([str(first), str(second), "--out", str(tmp_path / "merged"), "--no-plots"]) == 0
    out = capsys.readouterr().out
    assert "Ranked by last head acc" in out and "paired differences with finetune" in out
    assert re.search(r"last head acc\s+ldifs\s+-2\.0 \[", out)
    assert (tmp_path / "merged" / "leaderboard.tex").is_file()
    assert np.isfinite(pd.read_csv(tmp_path / "merged" / "leaderboard_comparisons.csv")["diff"]).all()


def test_settings_of_one_method_get_distinct_shades_and_markers():
    from benchmark.reporting.plots import family_styles, method_style

    styles = family_styles(["finetune", "ldifs[alpha=10]", "ldifs[alpha=100]"])
    assert styles["finetune"] == method_style("finetune")
    ten, hundred = styles["ldifs[alpha=10]"], styles["ldifs[alpha=100]"]
    assert ten["color"] != hundred["color"] and ten["marker"] != hundred["marker"]


def test_the_intervals_figure_has_units_and_keeps_one_outlier_off_the_axis(tmp_path):
    from matplotlib.figure import Figure

    from benchmark.reporting import plots

    drawn = {}
    original = Figure.savefig

    def spy(fig, *args, **kwargs):
        drawn["axes"] = fig.axes
        return original(fig, *args, **kwargs)

    methods = ["zeroshot", "ldifs", "finetune", "l2sp"]
    means = np.array([0.0, -78.9, -84.0, -80.0])  # the README's dZS: zero-shot keeps everything
    panels = {"dZS": (means, means - 3, means + 3)}
    Figure.savefig = spy
    try:
        plots.plot_intervals(methods, panels, tmp_path)
    finally:
        Figure.savefig = original
    ax = drawn["axes"][0]
    assert ax.get_xlabel() == "change in accuracy (points)"
    left, right = ax.get_xlim()
    assert right < -60  # the zero-shot point at 0 did not stretch the axis ...
    assert any(text.get_text() == "0.0" for text in ax.texts)  # ... it is an arrow labelled with its value
    assert plots._outlier(np.array([1.0, 2.0, 3.0]), np.array([0.0, 1, 2]), np.array([2.0, 3, 4])) is None
