"""Selection on the val split: a hand-made 2-setting grid picks what a hand computation picks."""

from __future__ import annotations

import pandas as pd
import pytest

from benchmark.errors import UserError
from benchmark.reporting import table
from benchmark.reporting.selection import check_criterion, select_settings, selection_markdown, selection_table

S1, S2 = "ewc[ewc.ewc_lambda=1]", "ewc[ewc.ewc_lambda=100]"
# final-stage val head accuracy on the trained tasks (a, b) per (setting, seed)
VAL_HEAD = {(S1, 0): (50, 70), (S1, 1): (40, 60), (S2, 0): (80, 20), (S2, 1): (70, 60)}
# final-stage val linear-probe accuracy on the eval-only task c (pre-trained: 50)
VAL_LP_C = {S1: 50.0, S2: 40.0}


def long_frame(split: str) -> pd.DataFrame:
    rows = []
    for (method, seed), (acc_a, acc_b) in VAL_HEAD.items():
        for stage, trained in enumerate(["pretrained", "a", "b"]):
            for task in ("a", "b", "c"):
                for kind in ("head", "lp"):
                    acc = 50.0 if stage == 0 else 30.0
                    if stage == 2 and kind == "head" and task in ("a", "b"):
                        acc = float(acc_a if task == "a" else acc_b)
                    if stage == 2 and kind == "lp" and task == "c":
                        acc = VAL_LP_C[method]
                    if split == "test":  # test says the opposite: it must not matter
                        acc = 100.0 - acc
                    rows.append([method, seed, stage, trained, task, kind, acc, "ok", split])
    return pd.DataFrame(rows, columns=[*table.LONG_COLUMNS, "status", "split"])


SETTINGS = pd.DataFrame(
    [
        {"method": S1, "base_method": "ewc", "setting": "ewc.ewc_lambda=1"},
        {"method": S2, "base_method": "ewc", "setting": "ewc.ewc_lambda=100"},
    ]
)


def test_val_last_head_matches_the_hand_computation():
    chosen = select_settings(long_frame("val"), SETTINGS, "val_last_head").set_index("method")
    # by hand: S1 = mean(60, 50) = 55; S2 = mean(50, 65) = 57.5 -> S2
    assert chosen.loc[S1, "criterion_value"] == pytest.approx(55.0)
    assert chosen.loc[S2, "criterion_value"] == pytest.approx(57.5)
    assert chosen["selected"].to_dict() == {S1: False, S2: True}


def test_val_last_head_plus_dlp_weighs_concept_forgetting():
    chosen = select_settings(long_frame("val"), SETTINGS, "val_last_head_plus_dlp").set_index("method")
    # by hand: S1 = 55 + (50 - 50) = 55; S2 = 57.5 + (40 - 50) = 47.5 -> S1
    assert chosen.loc[S2, "criterion_value"] == pytest.approx(47.5)
    assert chosen["selected"].to_dict() == {S1: True, S2: False}


def test_selection_reads_val_rows_only():
    both = pd.concat([long_frame("val"), long_frame("test")], ignore_index=True)
    out = selection_table(table.split_rows(both, "val"), table.split_rows(both, "test"), SETTINGS, "val_last_head")
    out = out.set_index("method")
    assert out.loc[S2, "selected"] and out.loc[S1, "test_last_head"] > out.loc[S2, "test_last_head"]
    poisoned = long_frame("test")
    poisoned["accuracy"] = 0.0
    again = selection_table(long_frame("val"), poisoned, SETTINGS, "val_last_head").set_index("method")
    assert again["selected"].equals(out["selected"])


def test_selection_markdown_marks_the_choice_beside_both_settings():
    out = selection_table(long_frame("val"), long_frame("test"), SETTINGS, "val_last_head")
    lines = selection_markdown(out).splitlines()
    header = next(line for line in lines if line.startswith("| method"))
    assert "val: val_last_head" in header and "test dLP" in header
    rows = [line for line in lines if line.startswith("| ewc")]
    # by hand: val 55 / 57.5 (above); test = 100 - val, so last head 45 / 42.5 and the test
    # probe on c goes from 50 to 50 (S1) or 60 (S2): dLP 0 / +10
    assert rows == [
        "| ewc | ewc.ewc_lambda=1 | 55.0 |  | 45.0 | 0.0 | n/a | 2 |",
        "| ewc | ewc.ewc_lambda=100 | 57.5 | chosen | 42.5 | 10.0 | n/a | 2 |",
    ]


def test_reports_never_read_val_rows(tmp_path):
    both = pd.concat([long_frame("test"), long_frame("val")], ignore_index=True)
    both.to_csv(tmp_path / "accuracy_long.csv", index=False)
    loaded = table.load_long_csv(tmp_path / "accuracy_long.csv")
    assert set(loaded["split"]) == {"test"} and len(loaded) == len(both) // 2


def test_unknown_criterion_names_the_choices():
    with pytest.raises(UserError, match="val_last_head, val_last_head_plus_dlp"):
        check_criterion("test_last_head")


def test_selection_markdown_orders_settings_by_value():
    sizes = [1000, 100, 200]  # hash order, as a sweep lists them
    selection = pd.DataFrame(
        {
            "method": [f"replay[replay.mem_size={n}]" for n in sizes],
            "base_method": "replay",
            "setting": [f"replay.mem_size={n}" for n in sizes],
            "criterion": "val_last_head",
            "criterion_value": [3.0, 1.0, 2.0],
            "selected": [True, False, False],
            **{column: 0.0 for column in ("test_last_head", "test_dlp", "test_dzs")},
            "test_n_seeds": 1,
        }
    )
    rows = [line.split(" | ")[1] for line in selection_markdown(selection).splitlines() if line.startswith("| replay")]
    assert rows == ["replay.mem_size=100", "replay.mem_size=200", "replay.mem_size=1000"]
