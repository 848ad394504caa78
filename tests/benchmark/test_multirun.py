"""``--multirun KEY=V1,V2``: a grid from the command line, run as a sweep of the config in force."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import MICRO

from benchmark.errors import UserError
from benchmark.run.cli import main
from benchmark.run.multirun import parse_multirun


def test_the_issue_command_lists_two_cells(capsys, tmp_path):
    """python run_benchmark.py --multirun hparams.ldifs.alpha=10,100 --methods ldifs --dry-run"""
    argv = ["--multirun", "hparams.ldifs.alpha=10,100", "--methods", "ldifs", "--dry-run"]
    assert main([*argv, "--results-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "2 cells" in out
    assert "hparams.ldifs.alpha=10\n" in out and "hparams.ldifs.alpha=100\n" in out
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    # the same command names the same sweep (resumable); --name names it
    assert main([*argv, "--results-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[0] == out.splitlines()[0]
    assert main([*argv, "--results-dir", str(tmp_path), "--name", "mine"]) == 0
    assert capsys.readouterr().out.startswith("sweep mine: 2 cells")


def test_values_are_typed_and_bad_items_are_one_line():
    assert parse_multirun(["train.lr=1e-3,5e-4", "seeds=0,1", "methods=finetune,ldifs"]) == {
        "train.lr": [1e-3, 5e-4],
        "seeds": [0, 1],
        "methods": ["finetune", "ldifs"],
    }
    for bad in (["train.lr"], ["=1,2"], ["train.lr="], ["seeds=0", "seeds=1"]):
        with pytest.raises(UserError, match="--multirun"):
            parse_multirun(bad)
    assert main(["--multirun", "hparams.nosuch.alpha=1,2", "--dry-run"]) == 2


@pytest.mark.slow
def test_a_two_cell_multirun_merges_into_one_leaderboard(tmp_path, model_cache, capsys):
    config = {**MICRO, "methods": ["l2sp"], "device": "cpu", "results_dir": str(tmp_path / "results")}
    config["model"] = {**MICRO["model"], "cache_dir": model_cache}
    path = tmp_path / "micro.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = ["--config", str(path), "--multirun", "hparams.l2sp.alpha=0.01,100", "--name", "grid", "-q"]
    started = time.time()
    assert main(argv) == 0
    out_dir = tmp_path / "results" / "grid"
    board = pd.read_csv(out_dir / "leaderboard.csv")
    assert sorted(board["method"]) == ["l2sp[l2sp.alpha=0.01]", "l2sp[l2sp.alpha=100]"]
    assert (out_dir / "leaderboard.tex").is_file() and (out_dir / "sweep.json").is_file()
    printed = capsys.readouterr().out  # the merge's headline table and paired differences, as leaderboard merges
    assert "paired differences with l2sp[l2sp.alpha=" in printed and "l2sp[l2sp.alpha=100]" in printed
    assert main(argv) == 0
    assert "2 already complete, running 0" in capsys.readouterr().out
    # and its sweep.yaml reruns it with --sweep
    assert main(["--sweep", str(out_dir / "sweep.yaml"), "--dry-run"]) == 0
    assert capsys.readouterr().out.count("done") == 2
    print(f"wall {time.time() - started:.0f}s")


def test_multirun_and_sweep_do_not_mix(tmp_path):
    sweep = Path(tmp_path / "s.yaml")
    sweep.write_text("grid: {seeds: [0]}\n")
    assert main(["--sweep", str(sweep), "--multirun", "seeds=0,1", "--dry-run"]) == 2
