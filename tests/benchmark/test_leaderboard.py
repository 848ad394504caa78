"""The leaderboard: numbers, ranks and spread marks on a hand-made long CSV; writers; merging runs."""

from __future__ import annotations

import base64
import json
import math
import re
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark import rundir
from benchmark.config import RunConfig, dump_yaml
from benchmark.reporting import leaderboard, table

SEQUENCE = ["shapes", "digits"]  # the "micro" sequence: stage 1, stage 2
EVAL_ONLY = "textures"
LP_BEFORE, ZS_BEFORE = 70.0, 50.0  # pre-trained accuracy on the eval-only task

# Per (method, seed): (final head accuracy averaged over the two sequence tasks, final dLP, final dZS).
OUTCOMES = {
    "finetune": {0: (85.0, -12.0, -6.0), 1: (89.0, -8.0, -6.0)},
    "ldifs": {0: (84.0, -2.0, -1.0), 1: (85.0, -1.0, -1.0), 2: (86.0, 0.0, -1.0)},
    "ldifs+replay": {0: (88.0, -1.5, -2.0), 1: (88.0, -2.5, -4.0)},
}
# Hand-computed means and population stds (ddof 0) of OUTCOMES:
#   last head acc: finetune 87 ± 2, ldifs 85 ± sqrt(2/3), ldifs+replay 88 ± 0
#   dLP:           finetune -10 ± 2, ldifs -1 ± sqrt(2/3), ldifs+replay -2 ± 0.5
#   dZS:           finetune -6 ± 0, ldifs -1 ± 0,         ldifs+replay -3 ± 1
SQRT_2_3 = math.sqrt(2 / 3)
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def seed_rows(method: str, seed: int, head: float, dlp: float, dzs: float, status: str = "ok") -> list[tuple]:
    """Long rows of one (method, seed) over stages 0..2 whose final numbers are head, dlp and dzs."""
    # kind -> stage -> accuracies on (shapes, digits, textures); heads exist only for sequence tasks
    accuracy = {
        "head": [(20, 30, None), (90, 35, None), (head - 5, head + 5, None)],
        "lp": [(50, 60, LP_BEFORE), (80, 55, LP_BEFORE + dlp / 2), (75, 90, LP_BEFORE + dlp)],
        "zs": [(30, 40, ZS_BEFORE), (70, 38, ZS_BEFORE + dzs / 2), (60, 85, ZS_BEFORE + dzs)],
    }
    rows = []
    for kind, stages in accuracy.items():
        for stage, values in enumerate(stages):
            trained = "pretrained" if stage == 0 else SEQUENCE[stage - 1]
            for task, value in zip(SEQUENCE + [EVAL_ONLY], values):
                if value is not None:
                    rows.append((method, seed, stage, trained, task, kind, float(value), status))
    return rows


def long_frame(outcomes: Optional[dict] = None) -> pd.DataFrame:
    """The long rows of ``outcomes`` (default OUTCOMES), with a ``status`` column."""
    rows = [
        row
        for method, seeds in (outcomes or OUTCOMES).items()
        for seed, values in seeds.items()
        for row in seed_rows(method, seed, *values)
    ]
    return pd.DataFrame(rows, columns=[*table.LONG_COLUMNS, "status"])


def board_row(board: pd.DataFrame, method: str) -> pd.Series:
    return board[board["method"] == method].iloc[0]


# ---------------------------------------------------------------- numbers, ranks, marks


def test_means_and_stds_over_seeds():
    board = leaderboard.build_leaderboard(long_frame())
    expected = {  # method: (n_seeds, acc, acc_std, dlp, dlp_std, dzs, dzs_std)
        "finetune": (2, 87.0, 2.0, -10.0, 2.0, -6.0, 0.0),
        "ldifs": (3, 85.0, SQRT_2_3, -1.0, SQRT_2_3, -1.0, 0.0),
        "ldifs+replay": (2, 88.0, 0.0, -2.0, 0.5, -3.0, 1.0),
    }
    for method, values in expected.items():
        row = board_row(board, method)
        columns = ["n_seeds", "last_head_acc", "last_head_acc_std", "dlp", "dlp_std", "dzs", "dzs_std"]
        assert [row[column] for column in columns] == pytest.approx(list(values)), method
        assert row["status"] == "ok" and row["failed_seeds"] == ""
    assert list(board.columns) == leaderboard.leaderboard_columns()


def test_ranks_and_row_order():
    board = leaderboard.build_leaderboard(long_frame())
    assert list(board["method"]) == ["ldifs+replay", "finetune", "ldifs"]  # by last head acc
    assert list(board["rank_acc"]) == [1, 2, 3]
    # higher dLP = less forgetting = better: ldifs -1, ldifs+replay -2, finetune -10
    assert dict(zip(board["method"], board["rank_dlp"])) == {"ldifs": 1, "ldifs+replay": 2, "finetune": 3}


def test_ties_share_a_rank():
    outcomes = {**OUTCOMES, "finetune": {0: (88.0, -12.0, -6.0), 1: (88.0, -8.0, -6.0)}}
    board = leaderboard.build_leaderboard(long_frame(outcomes))
    assert dict(zip(board["method"], board["rank_acc"])) == {"finetune": 1, "ldifs+replay": 1, "ldifs": 3}
    assert board_row(board, "finetune")["acc_vs_best"] == "best"


def test_spread_marks():
    board = leaderboard.build_leaderboard(long_frame())
    marks = {
        method: tuple(board_row(board, method)[["acc_vs_best", "dlp_vs_best", "dzs_vs_best"]]) for method in OUTCOMES
    }
    # acc: best 88 ± 0; finetune |87 - 88| = 1 <= 0 + 2 -> ≈; ldifs 3 > 0 + 0.82 -> <
    # dLP: best ldifs -1 ± 0.82; ldifs+replay 1 <= 0.82 + 0.5 -> ≈; finetune 9 > 0.82 + 2 -> <
    # dZS: best ldifs -1 ± 0; ldifs+replay 2 > 0 + 1 -> <; finetune 5 > 0 -> <
    assert marks == {
        "ldifs+replay": ("best", "≈", "<"),
        "finetune": ("≈", "<", "<"),
        "ldifs": ("<", "best", "best"),
    }


def test_spread_marks_with_one_seed_say_so():
    nan = float("nan")
    means, stds = np.array([80.0, 70.0, 79.0, nan]), np.array([0.6, 1.0, 0.5, nan])
    # the best has one seed: it counts as a point; the others are judged by their own std
    # (|79.5 - 80| <= 0.5 -> ≈; |70 - 80| > 1 -> <). "n/a" only for a method of one seed.
    means[2] = 79.5
    one_seed_best = leaderboard.spread_marks(means, stds, np.array([1, 3, 3, 0]))
    assert one_seed_best == ["best", "<", "≈", "n/a"]
    # the best has seeds; a one-seed method still cannot be judged; |79 - 80| <= 0.6 + 0.5 -> ≈
    assert leaderboard.spread_marks(means, stds, np.array([2, 1, 2, 0])) == ["best", "n/a (1 seed)", "≈", "n/a"]
    assert leaderboard.spread_marks(np.array([nan]), np.array([nan]), np.array([0])) == ["n/a"]


def test_failed_seeds_set_status_and_are_left_out():
    failed = pd.DataFrame(seed_rows("finetune", 2, 0.0, -70.0, -50.0, status="failed"), columns=long_frame().columns)
    board = leaderboard.build_leaderboard(
        pd.concat([long_frame(), failed], ignore_index=True), failed_runs=[("zeroshot", 0)]
    )
    row = board_row(board, "finetune")
    assert (row["status"], row["failed_seeds"], row["n_seeds"]) == ("failed", "2", 2)
    assert row["last_head_acc"] == pytest.approx(87.0)  # the failed seed's zeros do not count
    lost = board_row(board, "zeroshot")  # failed with no rows at all: listed, unranked
    assert lost["status"] == "failed" and math.isnan(lost["last_head_acc"]) and pd.isna(lost["rank_acc"])
    assert board["method"].iloc[-1] == "zeroshot"
    assert board_row(board, "ldifs")["status"] == "ok"


def test_without_eval_only_tasks_dlp_is_missing():
    df = long_frame()
    board = leaderboard.build_leaderboard(df[df["eval_task"] != EVAL_ONLY])
    assert board["dlp"].isna().all() and board["rank_dlp"].isna().all()
    assert set(board["dlp_vs_best"]) == {"n/a"}
    assert list(board["rank_acc"]) == [1, 2, 3]


# ---------------------------------------------------------------- writers


def write_run(folder: Path, outcomes: dict, **config_overrides) -> Path:
    """A fake finished run: accuracy_long.csv, config.yaml (a RunConfig dump) and manifest.json."""
    folder.mkdir(parents=True)
    long_frame(outcomes).drop(columns="status").to_csv(folder / rundir.LONG_CSV, index=False)
    config = RunConfig(
        name=folder.name,
        sequence="micro",
        methods=list(outcomes),
        seeds=sorted({seed for seeds in outcomes.values() for seed in seeds}),
    )
    config.eval.test_limit = 200
    for section_and_key, value in config_overrides.items():  # e.g. eval__test_limit=500
        section, key = section_and_key.split("__")
        if section == "hparams":
            config.hparams[key] = value
        else:
            setattr(getattr(config, section), key, value)
    (folder / "config.yaml").write_text(dump_yaml(config))
    runs = [
        {"method": method, "seed": seed, "status": "ok", "stages": []}
        for method, seeds in outcomes.items()
        for seed in seeds
    ]
    (folder / "manifest.json").write_text(json.dumps({"runs": runs}))
    return folder


def test_write_leaderboard_files(tmp_path):
    run_dir = write_run(tmp_path / "run", OUTCOMES)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["runs"].append({"method": "ldifs", "seed": 7, "status": "failed", "stages": []})
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    paths = leaderboard.write_leaderboard(run_dir)
    names = ["leaderboard.csv", "leaderboard.md", "leaderboard.html", "leaderboard.tex", "leaderboard_comparisons.csv"]
    assert [path.name for path in paths] == names
    board = pd.read_csv(run_dir / "leaderboard.csv", keep_default_na=False, na_values=[""], dtype={"failed_seeds": str})
    assert list(board["method"]) == ["ldifs+replay", "finetune", "ldifs"]
    assert board_row(board, "ldifs")[["status", "failed_seeds"]].tolist() == ["failed", "7"]
    assert board_row(board, "finetune")["last_head_acc_std"] == pytest.approx(2.0)
    markdown = (run_dir / "leaderboard.md").read_text(encoding="utf-8")
    assert "| ldifs+replay | ok | default | 2 | 88.0 ± 0.0 [88.0, 88.0] | 1 | best |" in markdown
    assert "not a significance test" in markdown
    assert not list(run_dir.glob(".*.tmp"))  # atomic writes leave no temporary files


def test_one_seed_shows_the_mean_alone_and_staging_folders_get_the_final_name(tmp_path):
    run_dir = write_run(tmp_path / ".solo.partial-123", {"finetune": {0: OUTCOMES["finetune"][0]}})
    leaderboard.write_leaderboard(run_dir)
    markdown = (run_dir / "leaderboard.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Leaderboard: solo\n")  # the runner writes into .NAME.partial-PID
    row = "| finetune | ok | default | 1 | 85.0 | 1 | best | 85.0 | baseline | baseline | -12.0 | 1 | best | -12.0 |"
    assert row in markdown


def test_one_seed_has_no_std_and_no_interval_in_the_csv(tmp_path):
    """leaderboard.csv writes nothing, not 0.0, for the std and the CI of a single seed."""
    outcomes = {"finetune": {0: OUTCOMES["finetune"][0]}, "ldifs": {0: OUTCOMES["ldifs"][0]}}
    run_dir = write_run(tmp_path / "solo", outcomes)
    leaderboard.write_leaderboard(run_dir)
    board = pd.read_csv(run_dir / "leaderboard.csv", keep_default_na=False, dtype=str)
    ldifs = board_row(board, "ldifs")
    assert ldifs["last_head_acc"] == "84.0" and ldifs["last_head_acc_diff"] == "-1.0"
    for suffix in ("std", "ci_low", "ci_high", "iqm_ci_low", "iqm_ci_high", "diff_ci_low", "p_improve_ci_high"):
        assert ldifs[f"last_head_acc_{suffix}"] == "", suffix


def test_html_is_self_contained_and_embeds_the_plots(tmp_path):
    run_dir = write_run(tmp_path / "run", OUTCOMES)
    plots = run_dir / rundir.PLOTS_DIR
    plots.mkdir()
    for name in ("forgetting_curve.png", "dlp_ldifs.png", "heatmap_ldifs_replay_lp.png", "heatmap_gone_head.png"):
        (plots / name).write_bytes(TINY_PNG)
    leaderboard.write_leaderboard(run_dir)
    page = (run_dir / "leaderboard.html").read_text(encoding="utf-8")
    assert "<script>" in page and "<style>" in page
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(?!data:)[a-z]+:""", page)  # no external resource at all
    # the intervals figure (drawn here) and three of the four: a stale heatmap of a method not on the board is skipped
    assert page.count("data:image/png;base64,") == 4
    assert (plots / "leaderboard_intervals.svg").is_file()
    assert base64.b64encode(TINY_PNG).decode() in page
    assert 'data-sort="88.0"' in page and "ldifs+replay" in page


def test_html_captions_figures_in_words_and_says_where_the_numbers_come_from(tmp_path):
    run_dir = write_run(tmp_path / "run", OUTCOMES)
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(git_revision="abc123", machine="node7", device_name="cpu (x86_64)", command=["run_benchmark.py"])
    manifest["finished_utc"] = "2026-12-04T10:00:00+00:00"
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (run_dir / "selection.md").write_text("# Selection\n")
    (run_dir / rundir.PLOTS_DIR).mkdir()
    (run_dir / rundir.PLOTS_DIR / "heatmap_ldifs_replay_lp.png").write_bytes(TINY_PNG)
    leaderboard.write_leaderboard(run_dir)
    page = (run_dir / "leaderboard.html").read_text(encoding="utf-8")
    caption = "linear-probe accuracy on every task after each stage: ldifs+replay (click to enlarge)"
    assert f"<figcaption>{caption}</figcaption>" in page
    assert "<figcaption>heatmap_" not in page
    for text in ("2026-12-04T10:00:00+00:00", "abc123", "node7 cpu (x86_64)", "run_benchmark.py"):
        assert text in page, text
    assert '<a href="selection.md">' in page


def test_html_without_plots_still_has_the_table(tmp_path):
    run_dir = write_run(tmp_path / "run", OUTCOMES)
    leaderboard.write_leaderboard(run_dir)
    page = (run_dir / "leaderboard.html").read_text(encoding="utf-8")
    assert "<table" in page and "data:image" not in page and "<script>" in page


# ---------------------------------------------------------------- merging


def split_runs(tmp_path: Path, second_overrides: Optional[dict] = None, second: Optional[dict] = None) -> list[str]:
    """OUTCOMES made as two separate runs: finetune + ldifs seeds 0-1, then ldifs+replay + ldifs seed 2."""
    first = {"finetune": OUTCOMES["finetune"], "ldifs": {seed: OUTCOMES["ldifs"][seed] for seed in (0, 1)}}
    second = second or {"ldifs+replay": OUTCOMES["ldifs+replay"], "ldifs": {2: OUTCOMES["ldifs"][2]}}
    return [
        str(write_run(tmp_path / "run-a", first)),
        str(write_run(tmp_path / "run-b", second, **(second_overrides or {}))),
    ]


def refusal(capsys, argv: list[str]) -> str:
    """Run the CLI, assert it exits 2 with a one-line message, and return that line."""
    assert leaderboard.main(argv) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: ") and message.count("\n") == 1, message
    return message


def test_merge_pools_seeds_across_runs(tmp_path, capsys):
    out = tmp_path / "merged"
    # eval.batch_size only changes speed, so it may differ
    runs = split_runs(tmp_path, {"eval__batch_size": 64})
    assert leaderboard.main([*runs, "--out", str(out), "--no-plots"]) == 0
    merged = pd.read_csv(out / "leaderboard.csv", keep_default_na=False, na_values=[""])
    expected = leaderboard.build_leaderboard(long_frame())
    assert list(merged["method"]) == list(expected["method"])
    for column in ("n_seeds", "last_head_acc", "last_head_acc_std", "dlp", "dlp_std", "rank_acc", "rank_dlp"):
        np.testing.assert_allclose(merged[column].to_numpy(float), expected[column].to_numpy(float), err_msg=column)
    assert list(merged["acc_vs_best"]) == list(expected["acc_vs_best"])
    assert len(pd.read_csv(out / rundir.LONG_CSV)) == len(long_frame())
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert config["methods"] == ["finetune", "ldifs", "ldifs+replay"] and config["seeds"] == [0, 1, 2]
    assert json.loads((out / "manifest.json").read_text())["merged_from"] == runs
    assert (out / "leaderboard.html").is_file() and (out / "leaderboard.md").is_file()


def test_merge_accepts_a_run_from_before_eval_splits(tmp_path):
    runs = split_runs(tmp_path)
    config_path = Path(runs[1]) / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    del config["eval"]["splits"]  # written before the option existed: it scored test only
    config_path.write_text(yaml.safe_dump(config))
    assert leaderboard.main([*runs, "--out", str(tmp_path / "merged"), "--no-plots"]) == 0


def test_merge_refuses_a_different_stage_order(tmp_path, capsys):
    runs = split_runs(tmp_path)
    csv = Path(runs[1]) / rundir.LONG_CSV
    df = pd.read_csv(csv)
    df["trained_task"] = df["trained_task"].replace({"shapes": "digits", "digits": "shapes"})
    df.to_csv(csv, index=False)
    message = refusal(capsys, [*runs, "--out", str(tmp_path / "merged")])
    assert "sequence stage order" in message and "['shapes', 'digits']" in message and "run-b" in message
    assert not (tmp_path / "merged").exists()  # nothing written when refused


def test_merge_refuses_a_different_sequence_name(tmp_path, capsys):
    runs = split_runs(tmp_path)
    config_path = Path(runs[1]) / "config.yaml"
    config_path.write_text(config_path.read_text().replace("sequence: micro", "sequence: other.yaml"))
    message = refusal(capsys, [*runs, "--out", str(tmp_path / "merged")])
    assert "sequence (config.yaml) differs ('micro' vs 'other.yaml')" in message


def test_merge_refuses_a_different_eval_setting(tmp_path, capsys):
    runs = split_runs(tmp_path, {"eval__test_limit": 500})
    message = refusal(capsys, [*runs, "--out", str(tmp_path / "merged")])
    assert "eval.test_limit differs (200 vs 500)" in message
    assert "run-a" in message and "run-b" in message


def test_merge_refuses_a_different_model(tmp_path, capsys):
    runs = split_runs(tmp_path, {"model__pretrained": "openai"})
    assert "model.pretrained differs" in refusal(capsys, [*runs, "--out", str(tmp_path / "merged")])


def test_merge_refuses_a_duplicate_method_seed(tmp_path, capsys):
    runs = split_runs(tmp_path, second={"ldifs": {1: OUTCOMES["ldifs"][1]}})
    message = refusal(capsys, [*runs, "--out", str(tmp_path / "merged")])
    assert "both hold method 'ldifs' seed 1" in message


def test_two_plain_runs_of_ldifs_with_different_alphas_merge_into_two_rows(tmp_path, capsys):
    """Each plain run labels its methods with the values its config set (ldifs[alpha=10]),
    so one method run twice with other hyperparameters, same seeds, compares on one board."""
    outcomes = {"finetune": OUTCOMES["finetune"], "ldifs": {s: OUTCOMES["ldifs"][s] for s in (0, 1)}}
    alpha_10 = write_run(tmp_path / "alpha-10", outcomes, hparams__ldifs={"alpha": 10.0})
    alpha_70 = write_run(tmp_path / "alpha-70", {"ldifs": {0: (80.0, -6.0, -3.0), 1: (82.0, -4.0, -3.0)}})
    config = yaml.safe_load((alpha_70 / "config.yaml").read_text())
    config["hparams"] = {"ldifs": {"alpha": 70}}
    (alpha_70 / "config.yaml").write_text(yaml.safe_dump(config))
    for run, revision in ((alpha_10, "abc"), (alpha_70, "def")):
        manifest = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**manifest, "git_revision": revision}))
    out = tmp_path / "merged"
    assert leaderboard.main([str(alpha_10), str(alpha_70), "--out", str(out), "--no-plots"]) == 0
    assert json.loads((out / "manifest.json").read_text())["git_revision"] == "abc, def"  # both commits, said
    board = pd.read_csv(out / "leaderboard.csv", keep_default_na=False, na_values=[""])
    assert list(board["method"]) == ["finetune", "ldifs[alpha=10]", "ldifs[alpha=70]"]
    assert list(board["hparams"]) == ["default", "set", "set"]
    assert board_row(board, "ldifs[alpha=70]")["last_head_acc"] == 81.0
    assert "| ldifs[alpha=10] |" in (out / "leaderboard.md").read_text(encoding="utf-8")
    merged = yaml.safe_load((out / "config.yaml").read_text())
    assert "ldifs" not in merged["hparams"]  # the values the runs disagree on live in the labels
    again = tmp_path / "again"  # a merge merges again without labelling twice
    assert leaderboard.main([str(out), "--out", str(again), "--no-plots"]) == 0
    assert list(pd.read_csv(again / "leaderboard.csv")["method"]) == list(board["method"])
    # a single run's own leaderboard says which values it used
    leaderboard.write_leaderboard(alpha_10)
    assert "ldifs[alpha=10]" in set(pd.read_csv(alpha_10 / "leaderboard.csv")["method"])


def test_merge_refuses_missing_inputs(tmp_path, capsys):
    runs = split_runs(tmp_path)
    assert "does not exist" in refusal(capsys, [runs[0], str(tmp_path / "nowhere")])
    (Path(runs[1]) / rundir.LONG_CSV).unlink()
    assert "has no accuracy_long.csv" in refusal(capsys, runs)
    assert "given twice" in refusal(capsys, [runs[0], runs[0]])


def test_module_entry_point_exits_2_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "benchmark.reporting.leaderboard", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "does not exist" in result.stderr


def test_untuned_methods_are_marked_default():
    board = leaderboard.build_leaderboard(long_frame(), hparams={"replay": {"mem_size": 50}})
    marks = dict(zip(board["method"], board["hparams"]))
    assert marks == {"ldifs+replay": "set", "finetune": "default", "ldifs": "default"}
    assert set(leaderboard.build_leaderboard(long_frame())["hparams"]) == {""}  # no config: unknown


def folder_state(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_merge_refuses_an_out_that_is_another_run_and_leaves_it_untouched(tmp_path, capsys):
    runs = split_runs(tmp_path)
    finished = write_run(tmp_path / "run-c", {"finetune": OUTCOMES["finetune"]})
    before = folder_state(finished)
    message = refusal(capsys, [*runs, "--out", str(finished), "--no-plots"])
    assert "holds something other than an earlier merge" in message
    assert folder_state(finished) == before


def test_merge_refuses_an_out_inside_an_input_or_a_users_folder(tmp_path, capsys):
    runs = split_runs(tmp_path)
    assert "being merged" in refusal(capsys, [*runs, "--out", runs[0]])
    assert "being merged" in refusal(capsys, [*runs, "--out", str(Path(runs[1]) / "sub")])
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "accuracy_long.csv").write_text("my own file\n")
    assert "earlier merge" in refusal(capsys, [*runs, "--out", str(mine)])
    assert (mine / "accuracy_long.csv").read_text() == "my own file\n"
    (tmp_path / "a_file").write_text("x")
    assert "not a folder" in refusal(capsys, [*runs, "--out", str(tmp_path / "a_file")])


def test_merge_may_redo_an_earlier_merge_of_the_same_runs_only(tmp_path, capsys):
    runs = split_runs(tmp_path)
    out = tmp_path / "merged"
    out.mkdir()  # an empty folder is fine
    assert leaderboard.main([*runs, "--out", str(out), "--no-plots"]) == 0
    assert json.loads((out / "merge.json").read_text())["merged_from"] == sorted(str(Path(r).resolve()) for r in runs)
    assert leaderboard.main([*reversed(runs), "--out", str(out), "--no-plots"]) == 0  # same inputs: redone
    capsys.readouterr()
    third = write_run(tmp_path / "run-c", {"zeroshot": OUTCOMES["finetune"]})
    assert "earlier merge" in refusal(capsys, [runs[0], str(third), "--out", str(out), "--no-plots"])
