"""Summary tables, markdown and the redraw-from-CSV entry point, on a hand-made long CSV."""

from __future__ import annotations

import math
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark import rundir
from benchmark.reporting import reports, table

SEQUENCE = ["svhn", "cifar10"]  # stage 1, stage 2
EVAL_ONLY = "colours"
NAN = float("nan")

# ACCURACY[method][kind][seed] = rows stage 0..2, columns svhn, cifar10, colours (NaN = no row).
# Heads exist only for the sequence tasks. Seed 1 of "ft" head is seed 0 plus 2 points everywhere;
# seed 1 of "ft" lp differs from seed 0 only on the eval-only column.
FT_HEAD_0 = [[20, 30, NAN], [90, 35, NAN], [70, 95, NAN]]
FT_LP_0 = [[50, 60, 70], [80, 55, 64], [75, 90, 58]]
FT_LP_1 = [[50, 60, 70], [80, 55, 66], [75, 90, 62]]
FT_ZS = [[30, 40, 50], [70, 38, 45], [60, 85, 41]]
LDIFS_HEAD = [[20, 30, NAN], [88, 33, NAN], [86, 93, NAN]]
LDIFS_LP = [[50, 60, 70], [78, 61, 69], [77, 88, 68]]
LDIFS_ZS = [[30, 40, 50], [72, 41, 49], [70, 84, 48]]
ACCURACY = {
    "ft": {
        "head": {0: FT_HEAD_0, 1: (np.array(FT_HEAD_0) + 2).tolist()},
        "lp": {0: FT_LP_0, 1: FT_LP_1},
        "zs": {0: FT_ZS, 1: FT_ZS},
    },
    "ldifs": {
        "head": {0: LDIFS_HEAD, 1: LDIFS_HEAD},
        "lp": {0: LDIFS_LP, 1: LDIFS_LP},
        "zs": {0: LDIFS_ZS, 1: LDIFS_ZS},
    },
}


def long_frame() -> pd.DataFrame:
    """The long CSV rows of ACCURACY, plus one failed row that must be ignored."""
    rows = []
    for method, kinds in ACCURACY.items():
        for kind, seeds in kinds.items():
            for seed, matrix in seeds.items():
                for stage, accuracies in enumerate(matrix):
                    trained = "pretrained" if stage == 0 else SEQUENCE[stage - 1]
                    for task, accuracy in zip(SEQUENCE + [EVAL_ONLY], accuracies):
                        if not math.isnan(accuracy):
                            rows.append((method, seed, stage, trained, task, kind, float(accuracy), "ok"))
    # A failed evaluation that duplicates a real cell: it must neither count nor clash.
    rows.append(("ft", 0, 2, "cifar10", EVAL_ONLY, "lp", 0.0, "failed"))
    return pd.DataFrame(rows, columns=[*table.LONG_COLUMNS, "status"])


def summary_row(summary: pd.DataFrame, method: str, kind: str) -> pd.Series:
    return summary[(summary["method"] == method) & (summary["kind"] == kind)].iloc[0]


def test_sequence_and_eval_only_tasks_follow_stage_order_not_row_order():
    shuffled = long_frame().sample(frac=1.0, random_state=0)
    assert table.sequence_tasks(shuffled) == SEQUENCE
    assert table.eval_only_tasks(long_frame()) == [EVAL_ONLY]


def test_sequence_tasks_rejects_two_sequences():
    df = long_frame()
    df.loc[(df["method"] == "ldifs") & (df["stage"] == 1), "trained_task"] = "mnist"
    with pytest.raises(ValueError, match="different tasks"):
        table.sequence_tasks(df)


def test_accuracy_matrix_has_nan_where_missing():
    df = table.usable_rows(long_frame())
    columns = SEQUENCE + [EVAL_ONLY]
    np.testing.assert_allclose(table.accuracy_matrix(df, "ft", 1, "lp", columns), FT_LP_1)
    head = table.accuracy_matrix(df, "ft", 0, "head", columns)
    np.testing.assert_allclose(head, FT_HEAD_0)  # colours column all NaN: no head for it
    dropped = df.drop(df[(df["method"] == "ft") & (df["seed"] == 0) & (df["kind"] == "zs") & (df["stage"] == 1)].index)
    assert np.isnan(table.accuracy_matrix(dropped, "ft", 0, "zs", columns)[1]).all()


def test_accuracy_matrix_rejects_duplicates():
    with pytest.raises(ValueError, match="duplicate rows"):
        table.accuracy_matrix(long_frame(), "ft", 0, "lp", SEQUENCE + [EVAL_ONLY])  # failed row kept


def test_summarise_layout():
    summary = reports.summarise(long_frame())
    assert list(zip(summary["method"], summary["kind"])) == [
        ("ft", "head"),
        ("ft", "lp"),
        ("ft", "zs"),
        ("ldifs", "head"),
        ("ldifs", "lp"),
        ("ldifs", "zs"),
    ]
    assert list(summary.columns) == [
        "method",
        "kind",
        "n_seeds",
        "avg_acc_final",
        "avg_acc_final_std",
        "last",
        "last_std",
        "inc_avg",
        "inc_avg_std",
        "inc_last",
        "inc_last_std",
        "forgetting_if",
        "forgetting_max",
        "bwt",
        "fwt",
        "mtil_transfer",
        "mtil_avg",
        "mtil_last",
        "delta_final_untrained",
        "delta_final_untrained_std",
        "delta_mean_untrained",
        "ece_last",
        "delta_final__colours",
        "forgetting_if__svhn",  # every sequence task but the last
    ]
    assert (summary["n_seeds"] == 2).all()


def test_summarise_ft_head():
    row = summary_row(reports.summarise(long_frame()), "ft", "head")
    # seed 0: final row (70, 95) -> 82.5; seed 1 is +2 -> 84.5; mean 83.5, population std 1
    assert row["avg_acc_final"] == pytest.approx(83.5)
    assert row["avg_acc_final_std"] == pytest.approx(1.0)
    assert row["last"] == pytest.approx(83.5)
    assert row["last_std"] == pytest.approx(1.0)
    assert row["mtil_last"] == pytest.approx(83.5)
    # differences do not move with a uniform shift: 90 - 70 = 20 in both seeds
    assert row["forgetting_if"] == pytest.approx(20.0)
    assert row["forgetting_max"] == pytest.approx(20.0)
    assert row["bwt"] == pytest.approx(-20.0)
    assert row["fwt"] == pytest.approx(5.0)  # 35 - 30
    assert row["mtil_transfer"] == pytest.approx(36.0)  # mean(35, 37)
    assert row["mtil_avg"] == pytest.approx(73.5)  # seed 0: (90+35+70+95)/4 = 72.5, seed 1: 74.5
    # heads have no eval-only task, so every concept-forgetting column is missing
    assert math.isnan(row["delta_final_untrained"])
    assert math.isnan(row["delta_mean_untrained"])
    assert math.isnan(row["delta_final__colours"])


def test_summarise_ft_lp():
    row = summary_row(reports.summarise(long_frame()), "ft", "lp")
    assert row["avg_acc_final"] == pytest.approx(82.5)  # (75 + 90) / 2 in both seeds
    assert row["avg_acc_final_std"] == pytest.approx(0.0)
    assert row["forgetting_if"] == pytest.approx(5.0)  # 80 - 75
    assert row["bwt"] == pytest.approx(-5.0)
    assert row["fwt"] == pytest.approx(-5.0)  # 55 - 60
    assert row["mtil_transfer"] == pytest.approx(55.0)
    assert row["mtil_avg"] == pytest.approx(75.0)  # (80 + 55 + 75 + 90) / 4
    # dLP on colours at the final stage: seed 0: 58 - 70 = -12, seed 1: 62 - 70 = -8
    assert row["delta_final_untrained"] == pytest.approx(-10.0)
    assert row["delta_final_untrained_std"] == pytest.approx(2.0)
    assert row["delta_final__colours"] == pytest.approx(-10.0)
    # seed 0: stage 1 mean(55-60, 64-70) = -5.5, stage 2: -12 -> -8.75
    # seed 1: stage 1 mean(55-60, 66-70) = -4.5, stage 2: -8 -> -6.25; mean -7.5
    assert row["delta_mean_untrained"] == pytest.approx(-7.5)


def test_summarise_ldifs_lp_and_zs():
    summary = reports.summarise(long_frame())
    lp = summary_row(summary, "ldifs", "lp")
    assert lp["forgetting_if"] == pytest.approx(1.0)  # 78 - 77
    assert lp["fwt"] == pytest.approx(1.0)  # 61 - 60
    assert lp["delta_final_untrained"] == pytest.approx(-2.0)  # 68 - 70
    assert lp["delta_mean_untrained"] == pytest.approx(-1.0)  # mean(mean(1, -1), -2)
    zs = summary_row(summary, "ldifs", "zs")
    assert zs["delta_final_untrained"] == pytest.approx(-2.0)  # dZS: 48 - 50
    assert zs["last"] == pytest.approx(77.0)  # (70 + 84) / 2


def test_summarise_without_eval_only_tasks_skips_stages_with_nothing_untrained():
    df = long_frame()
    row = summary_row(reports.summarise(df[df["eval_task"] != EVAL_ONLY]), "ft", "lp")
    assert math.isnan(row["delta_final_untrained"])
    assert row["delta_mean_untrained"] == pytest.approx(-5.0)  # only stage 1: 55 - 60
    assert "delta_final__colours" not in row.index


def test_markdown_table():
    frame = pd.DataFrame({"method": ["ft", "a|b"], "n_seeds": [2, 1], "last": [81.234, NAN]})
    assert reports.markdown_table(frame) == (
        "| method | n_seeds | last |\n| --- | ---: | ---: |\n| ft | 2 | 81.2 |\n| a\\|b | 1 | n/a |\n"
    )
    assert "81.23" in reports.markdown_table(frame, floatfmt=".2f")


def write_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    long_frame().to_csv(run_dir / rundir.LONG_CSV, index=False)
    return run_dir


@pytest.fixture(scope="module")
def drawn_run(tmp_path_factory) -> Path:
    """A run redrawn once through main() (drawing 18 figures is the slow part of this file)."""
    run_dir = write_run(tmp_path_factory.mktemp("report"))
    assert reports.main([str(run_dir)]) == 0
    return run_dir


def test_write_report_writes_the_summary_csv(drawn_run):
    summary = pd.read_csv(drawn_run / rundir.SUMMARY_CSV)
    pd.testing.assert_frame_equal(summary, reports.summarise(long_frame()), check_dtype=False)


PLOT_STEMS = [f"heatmap_{method}_{kind}" for method in ACCURACY for kind in ("head", "lp", "zs")]
PLOT_STEMS += ["dlp_ft", "dlp_ldifs", "forgetting_curve"]


def test_write_report_draws_png_and_svg(drawn_run):
    for stem in PLOT_STEMS:
        for suffix in ("png", "svg"):
            assert (drawn_run / rundir.PLOTS_DIR / f"{stem}.{suffix}").stat().st_size > 0
    assert [path.name for path in drawn_run.rglob("*.tmp")] == []  # atomic writes left nothing behind


def test_write_report_writes_the_markdown(drawn_run):
    report = (drawn_run / rundir.REPORT_MD).read_text()
    assert report.startswith("# ")
    assert "| method | kind |" in report
    assert "(summary.csv)" in report
    assert "svhn -> cifar10" in report
    for stem in PLOT_STEMS:
        assert f"(plots/{stem}.png)" in report


def test_main_returns_2_on_a_missing_dir(tmp_path, capsys):
    assert reports.main([str(tmp_path / "missing")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: cannot read") and error.count("\n") == 1


def test_main_returns_2_on_a_csv_without_the_columns(tmp_path, capsys):
    (tmp_path / rundir.LONG_CSV).write_text("method,seed\nft,0\n")
    assert reports.main([str(tmp_path)]) == 2
    assert "lacks columns" in capsys.readouterr().err


def test_main_returns_2_on_a_csv_without_fine_tuning_stages(tmp_path, capsys):
    pretrained_only = long_frame().query("stage == 0")
    pretrained_only.to_csv(tmp_path / rundir.LONG_CSV, index=False)
    assert reports.main([str(tmp_path)]) == 2
    assert "no usable fine-tuning stage" in capsys.readouterr().err


def test_main_returns_2_on_duplicate_measurements(tmp_path, capsys):
    df = long_frame()
    df.loc[df.index[-1], "status"] = "ok"  # the failed duplicate now counts and clashes
    df.to_csv(tmp_path / rundir.LONG_CSV, index=False)
    assert reports.main([str(tmp_path)]) == 2
    assert "2 rows measure the same cell" in capsys.readouterr().err


def test_module_entry_point_exits_2_on_a_missing_dir(tmp_path, monkeypatch, capsys):
    # runpy runs the module as ``python -m benchmark.reporting.reports`` would, without a new interpreter;
    # like a fresh interpreter, it must not find the module imported already (runpy warns then).
    monkeypatch.delitem(sys.modules, "benchmark.reporting.reports")
    monkeypatch.setattr(sys, "argv", ["benchmark.reporting.reports", str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_module("benchmark.reporting.reports", run_name="__main__")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_ece_last_from_the_ece_column():
    df = long_frame()
    assert math.isnan(summary_row(reports.summarise(df), "ft", "head")["ece_last"])  # older CSVs: no column
    final = df["stage"] == df["stage"].max()
    df["ece"] = np.where(final & (df["eval_task"] == df["trained_task"]), 4.0, 10.0)
    row = summary_row(reports.summarise(df), "ft", "head")
    assert row["ece_last"] == pytest.approx(7.0)  # final stage, 2 sequence tasks: (4 + 10) / 2
