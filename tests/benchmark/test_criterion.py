"""The embedded default's criterion: per-seed numbers, pairing of a sweep's settings with
the baseline's, the split it reads, the goal, and its command line."""

import pandas as pd
import pytest

from benchmark.reporting import criterion
from benchmark.reporting.criterion import Goal, criterion_table, paired_baseline, render

COLUMNS = ["method", "seed", "stage", "trained_task", "eval_task", "kind", "accuracy", "split"]


def _rows(method, head, lp, seed=0, split="test"):
    """Two trained tasks a, b and one eval-only task e; ``head`` is R[stage][task], ``lp`` e's probe."""
    rows = []
    for stage in range(3):
        trained = ["", "a", "b"][stage]
        rows += [(method, seed, stage, trained, t, "head", head[stage][j], split) for j, t in enumerate("ab")]
        rows.append((method, seed, stage, trained, "e", "lp", lp[stage], split))
    return rows


FT = ([[10, 10], [80, 20], [50, 90]], [90, 80, 60])  # last 70, diagonal 85, dLP -30
LDIFS = ([[10, 10], [78, 20], [49, 88]], [90, 85, 80])  # last 68.5, diagonal 83, dLP -10


def test_numbers_gaps_and_recovery_of_a_hand_made_run():
    df = pd.DataFrame(_rows("finetune", *FT) + _rows("ldifs", *LDIFS), columns=COLUMNS)
    table = criterion_table(df).set_index("method")
    assert table.loc["finetune", "last"] == 70 and table.loc["finetune", "diagonal"] == 85
    assert table.loc["finetune", "dlp"] == -30 and table.loc["ldifs", "dlp"] == -10
    assert table.loc["ldifs", "last_gap"] == pytest.approx(1.5)
    assert table.loc["ldifs", "diagonal_gap"] == pytest.approx(2.0)
    assert table.loc["ldifs", "recovered"] == pytest.approx(2 / 3)
    assert table.loc["ldifs", "goal_met"] is False  # diagonal gap 2.0 > 1.5
    assert table.loc["ldifs", "baseline"] == "finetune" and pd.isna(table.loc["finetune", "baseline"])
    assert criterion_table(df, goal=Goal(max_diagonal_gap=2.0)).set_index("method").loc["ldifs", "goal_met"]
    text = render(table.reset_index())
    assert table.loc["ldifs", "margin"] == pytest.approx(-0.5)  # the diagonal: 1.5 - 2.0
    assert "| ldifs | 1 |" in text and "1.5 / 2.0 | 67% | no (-0.5) |" in text


def test_seeds_give_mean_and_population_std():
    df = pd.DataFrame(
        _rows("finetune", *FT, seed=0) + _rows("finetune", [[10, 10], [80, 20], [54, 90]], FT[1], seed=1),
        columns=COLUMNS,
    )
    row = criterion_table(df).iloc[0]
    assert row["seeds"] == 2 and row["last"] == pytest.approx(71) and row["last_std"] == pytest.approx(1)


def test_the_split_read_is_the_one_asked_for():
    test_rows = _rows("finetune", *FT) + _rows("ldifs", *LDIFS)
    val_ldifs = ([[10, 10], [80, 20], [50, 90]], [90, 85, 75])  # as fine-tuning on val, dLP -15
    val_rows = _rows("finetune", *FT, split="val") + _rows("ldifs", *val_ldifs, split="val")
    df = pd.DataFrame(test_rows + val_rows, columns=COLUMNS)
    on_val = criterion_table(df, split="val").set_index("method")
    assert on_val.loc["ldifs", "last_gap"] == 0 and on_val.loc["ldifs", "recovered"] == pytest.approx(0.5)
    assert criterion_table(df, split="test").set_index("method").loc["ldifs", "last_gap"] == pytest.approx(1.5)


def test_a_sweeps_settings_are_paired_with_the_baseline_of_the_same_shared_setting():
    ft_fast = ([[10, 10], [90, 20], [60, 95]], [90, 70, 50])  # dLP -40 at the other learning rate
    rows = (
        _rows("finetune[train.lr=0.002]", *FT)
        + _rows("finetune[train.lr=0.003]", *ft_fast)
        + _rows("ldifs[train.lr=0.002,ldifs.alpha=150]", *LDIFS)
        + _rows("ldifs[train.lr=0.003,ldifs.alpha=150]", *LDIFS)
    )
    table = criterion_table(pd.DataFrame(rows, columns=COLUMNS)).set_index("method")
    slow, fast = table.loc["ldifs[train.lr=0.002,ldifs.alpha=150]"], table.loc["ldifs[train.lr=0.003,ldifs.alpha=150]"]
    assert slow["baseline"] == "finetune[train.lr=0.002]" and slow["last_gap"] == pytest.approx(1.5)
    assert fast["baseline"] == "finetune[train.lr=0.003]" and fast["last_gap"] == pytest.approx(9)
    assert fast["recovered"] == pytest.approx(0.75)


def test_pairing_ignores_the_methods_own_hyperparameters_and_composed_parts():
    methods = ["finetune[train.epochs=6]", "finetune[train.epochs=10]", "ldifs+replay[ldifs.alpha=5,train.epochs=10]"]
    assert paired_baseline(methods[2], "finetune", methods) == "finetune[train.epochs=10]"
    assert paired_baseline("ldifs[alpha=5]", "finetune", ["finetune"]) == "finetune"  # a plain run's label
    assert paired_baseline("ldifs[train.epochs=8]", "finetune", methods) is None


def _write_run(folder, rows):
    folder.mkdir()
    pd.DataFrame(rows, columns=COLUMNS).to_csv(folder / "accuracy_long.csv", index=False)


def test_command_line_prints_the_table_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    _write_run(tmp_path / "run", _rows("finetune", *FT) + _rows("ldifs", *LDIFS))
    assert criterion.main([str(tmp_path / "run"), "--max-gap", "2"]) == 0
    out = capsys.readouterr().out
    assert "| yes (+0.0) |" in out and "goal: gaps <= 2 / 2 points, recovered >= 55%" in out
    assert criterion.main([str(tmp_path / "run"), "--split", "train"]) == 2
    assert capsys.readouterr().err.strip() == "error: --split='train' is not valid; valid choices: test, val"
    assert criterion.main([str(tmp_path / "run"), "--split", "val"]) == 2  # a plain run has no val rows
    assert "has no val rows (it scored test)" in capsys.readouterr().err
    val_ldifs = ([[10, 10], [80, 20], [50, 90]], [90, 85, 75])
    _write_run(tmp_path / "sweep", _rows("finetune", *FT, split="val") + _rows("ldifs", *val_ldifs, split="val"))
    assert criterion.main([str(tmp_path / "sweep"), "--split", "val"]) == 0
    assert "0.0 / 0.0 | 50% | no (-5.0) |" in capsys.readouterr().out
    assert criterion.main([str(tmp_path / "missing")]) == 2
    assert criterion.main([str(tmp_path / "run"), "--max-gap", "x"]) == 2
    assert capsys.readouterr().err.count("\n") == 2  # one line each
