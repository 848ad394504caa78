"""Sweeps end to end on the micro sequence: parallel cells, resume per cell, shards, a SIGKILLed
cell, selection on val that test numbers cannot move, and bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from benchmark.reporting.leaderboard_build import CAPTIONS
from benchmark.run.cli import main

REPO = Path(__file__).resolve().parents[2]
# conftest's MICRO config (one thread: cells are byte-reproducible), as a sweep base
MICRO_BASE = {
    "sequence": "micro",
    "threads": 1,
    "device": "cpu",
    "model": {"name": "tiny-rn", "pretrained": "suite", "pretrain": {"images": 256, "epochs": 1, "batch_size": 64}},
    "train": {"lr": 1.0e-3, "batch_size": 32, "warmup_steps": 2, "train_limit": 64},
    "eval": {"lp_train_limit": 64, "test_limit": 48, "lp_max_iter": 20},
}
GRID = {"seeds": [0, 1], "hparams.l2sp.alpha": [0.01, 100.0]}


def write_sweep(folder: Path, cache: str, results: Path, **extra) -> Path:
    base = {**MICRO_BASE, "methods": ["l2sp"], "results_dir": str(results)}
    base["model"] = {**MICRO_BASE["model"], "cache_dir": cache}
    doc = {"name": "grid", "base": base, "grid": GRID, "select": "val_last_head", **extra}
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def sweep(path: Path, *flags: str) -> int:
    return main(["--sweep", str(path), "-q", *flags])


@pytest.fixture(scope="module")
def grid(tmp_path_factory, model_cache):
    """The 2 x 2 grid, run once with two local workers."""
    folder = tmp_path_factory.mktemp("sweep")
    path = write_sweep(folder, model_cache, folder / "results")
    assert sweep(path, "--workers", "2") == 0
    return path, folder / "results" / "grid"


def test_grid_runs_every_cell_and_merges(grid, capsys):
    _, out = grid
    cells = sorted(p.name for p in (out / "cells").iterdir() if not p.name.startswith("."))
    assert len(cells) == 4
    status = yaml.safe_load((out / "sweep.json").read_text())
    assert [c["status"] for c in status["cells"]] == ["complete"] * 4
    board = pd.read_csv(out / "leaderboard.csv")
    assert list(board["base_method"]) == ["l2sp"] and board["setting"][0] in ("l2sp.alpha=0.01", "l2sp.alpha=100")
    assert list(board["hparams"]) == ["tuned"]  # chosen among the grid's two settings
    merged = pd.read_csv(out / "accuracy_long.csv")
    assert set(merged["split"]) == {"test", "val"} and set(merged["seed"]) == {0, 1}
    assert set(merged["method"]) == {"l2sp[l2sp.alpha=0.01]", "l2sp[l2sp.alpha=100]"}
    summary = pd.read_csv(out / "summary.csv")  # reports over every setting, test rows only
    assert set(summary["method"]) == set(merged["method"])
    selection = pd.read_csv(out / "selection.csv")
    assert len(selection) == 2 and selection["selected"].sum() == 1
    rows = [line for line in (out / "selection.md").read_text().splitlines() if line.startswith("| l2sp |")]
    assert len(rows) == 2 and sum("| chosen |" in row for row in rows) == 1
    chosen = yaml.safe_load((out / "selected_config.yaml").read_text())
    assert chosen["methods"] == ["l2sp"] and chosen["hparams"]["l2sp"]["alpha"] in (0.01, 100.0)


@pytest.mark.slow  # over 10 s: run by .ci/run's slow line
def test_rerun_runs_only_missing_cells(grid, capsys):
    path, out = grid
    before = (out / "accuracy_long.csv").read_bytes()
    capsys.readouterr()
    assert sweep(path) == 0
    assert "running 0" in capsys.readouterr().out
    victim = sorted((out / "cells").glob("[0-9a-f]*"))[0]
    shutil.rmtree(victim)
    assert sweep(path) == 0
    assert "3 already complete, running 1" in capsys.readouterr().out
    assert victim.is_dir() and (out / "accuracy_long.csv").read_bytes() == before
    invocations = yaml.safe_load((out / "sweep.json").read_text())["invocations"]
    assert [run["cells_run"] for run in invocations] == [4, 0, 1]  # each command's work, timed
    assert all(run["wall_seconds"] >= 0 and run["cells_failed"] == 0 for run in invocations)


@pytest.mark.slow  # over 10 s: run by .ci/run's slow line
def test_shards_merge_to_the_unsharded_csv(grid, tmp_path, capsys):
    path, out = grid
    results = tmp_path / "sharded"
    assert sweep(path, "--results-dir", str(results), "--shard", "1/2") == 0
    assert sweep(path, "--results-dir", str(results), "--merge-only") == 0
    assert "missing:" in capsys.readouterr().out  # a partial merge lists the cells it lacks
    assert sweep(path, "--results-dir", str(results), "--shard", "2/2") == 0
    assert (results / "grid" / "accuracy_long.csv").read_bytes() == (out / "accuracy_long.csv").read_bytes()


def _sweep_process(path: Path, results: Path, *flags: str, stderr=subprocess.DEVNULL) -> subprocess.Popen:
    """The sweep command as a process of its own, so a test can kill it or its workers."""
    command = [sys.executable, "run_benchmark.py", "--sweep", str(path), "-q", *flags, "--results-dir", str(results)]
    return subprocess.Popen(command, cwd=REPO, stderr=stderr, text=True)


def _wait_until(ready, proc: subprocess.Popen, what: str, timeout_s: float = 240) -> None:
    deadline = time.time() + timeout_s
    while not ready() and proc.poll() is None:
        assert time.time() < deadline, what
        time.sleep(0.02)


def _checkpoint_written(results: Path):
    return lambda: bool(list((results / "grid" / "cells").glob(".*.partial/checkpoints/*.pt")))


@pytest.mark.slow  # kills and restarts worker processes: run by .ci/run's slow line
def test_killed_cell_resumes_from_its_stage_checkpoint(grid, tmp_path):
    path, out = grid
    results = tmp_path / "killed"
    proc = _sweep_process(path, results, "--shard", "1/4")
    _wait_until(_checkpoint_written(results), proc, "no stage checkpoint appeared")
    os.kill(proc.pid, signal.SIGKILL)  # after stage 1's checkpoint, during stage 2
    proc.wait()
    (key,) = [p.name[1:-8] for p in (results / "grid" / "cells").glob(".*.partial")]
    assert sweep(path, "--results-dir", str(results), "--shard", "1/4") == 0
    cell = results / "grid" / "cells" / key
    assert "resuming after stage 1" in (cell / "run.log").read_text()
    assert (cell / "accuracy_long.csv").read_bytes() == (out / "cells" / key / "accuracy_long.csv").read_bytes()


def _worker_pids(parent: int) -> list[int]:
    """The sweep's spawned pool workers: its children running multiprocessing's spawn_main."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if ppid == parent and b"spawn_main" in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            pass  # a process that ended while we looked
    return pids


@pytest.mark.slow  # kills and restarts worker processes: run by .ci/run's slow line
@pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="needs Linux /proc")
def test_workers_leave_with_a_killed_sweep(grid, tmp_path):
    path, _ = grid
    results = tmp_path / "terminated"
    proc = _sweep_process(path, results, "--workers", "2")

    def two_cells_started() -> bool:
        return len(list((results / "grid" / "cells").glob(".*.partial"))) >= 2

    _wait_until(two_cells_started, proc, "the two workers' cells never started")
    workers = _worker_pids(proc.pid)
    assert len(workers) == 2
    proc.terminate()  # SIGTERM to the sweep process alone, as a job's end or `kill` sends it
    proc.wait()
    deadline = time.time() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in workers):
        assert time.time() < deadline, "pool workers outlived their sweep"
        time.sleep(0.1)


@pytest.mark.slow  # kills and restarts worker processes: run by .ci/run's slow line
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_killed_worker_costs_no_cell(grid, tmp_path):
    """SIGKILL one pool worker mid-stage (as the out-of-memory killer would): the sweep starts
    a fresh pool, both cells complete, and their CSVs equal the undisturbed sweep's."""
    path, out = grid
    results = tmp_path / "oom"
    proc = _sweep_process(path, results, "--workers", "2", "--shard", "1/2", stderr=subprocess.PIPE)
    _wait_until(_checkpoint_written(results), proc, "no stage checkpoint appeared")
    os.kill(_worker_pids(proc.pid)[0], signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "a worker process died; " in stderr
    cells = sorted(p for p in (results / "grid" / "cells").iterdir() if not p.name.startswith("."))
    assert len(cells) == 2
    for cell in cells:
        assert (cell / "accuracy_long.csv").read_bytes() == (
            out / "cells" / cell.name / "accuracy_long.csv"
        ).read_bytes()


def test_poisoned_test_numbers_do_not_change_the_choice(grid, tmp_path):
    """Test rows rigged to favour the losing setting (100% vs 0%) leave the choice as it was."""
    path, out = grid
    copy = tmp_path / "poisoned"
    shutil.copytree(out.parent, copy)
    original = pd.read_csv(out / "selection.csv").set_index("method")
    winner = original.index[original["selected"]][0]
    for csv in (copy / "grid" / "cells").glob("*/accuracy_long.csv"):
        df = pd.read_csv(csv)
        alpha = yaml.safe_load((csv.parent / "config.yaml").read_text())["hparams"]["l2sp"]["alpha"]
        is_winner = f"alpha={alpha:g}]" in winner
        df.loc[(df["split"] == "test") & (df["stage"] > 0), "accuracy"] = 0.0 if is_winner else 100.0
        df.to_csv(csv, index=False)
    assert sweep(path, "--results-dir", str(copy), "--merge-only") == 0
    poisoned = pd.read_csv(copy / "grid" / "selection.csv").set_index("method")
    assert poisoned["selected"].equals(original["selected"])
    assert poisoned.loc[winner, "test_last_head"] == 0.0  # the poison did reach the test numbers
    assert pd.read_csv(copy / "grid" / "leaderboard.csv")["method"].tolist() == [winner]


def test_a_finished_sweep_merges_again_under_another_criterion(grid, tmp_path):
    path, out = grid
    copy = tmp_path / "reselected"
    shutil.copytree(out.parent, copy)
    assert sweep(path, "--results-dir", str(copy), "--merge-only", "--select", "val_last_head_plus_dlp") == 0
    selection = pd.read_csv(copy / "grid" / "selection.csv")
    assert set(selection["criterion"]) == {"val_last_head_plus_dlp"}
    # the criterion by its definition: val last head accuracy + val dLP, per setting
    expected = selection["val_last_head"] + selection["val_dlp"]
    assert selection["criterion_value"].to_numpy() == pytest.approx(expected.to_numpy())
    assert selection["selected"].sum() == 1 and selection.loc[expected.idxmax(), "selected"]


@pytest.mark.parametrize(
    "change, flags, message",
    [
        ({"grid": {"train.lrr": [1.0]}}, [], "unknown config key 'train.lrr'"),
        ({"grid": {"seeds": []}}, [], "non-empty list"),
        ({"grid": {"train.lr": ["fast"]}}, [], "train.lr: expected a number"),
        ({"grid": {"hparams.l2sp.alpha": ["strong"]}}, [], "hparams.l2sp.alpha"),
        ({}, ["--launcher", "pbs"], "unknown launcher 'pbs'"),
        ({}, ["--shard", "3/2"], "--shard '3/2'"),
        ({"select": "val_best_guess"}, [], "unknown select criterion 'val_best_guess'"),
        ({}, ["--select", "val_best_guess"], "unknown select criterion 'val_best_guess'"),
    ],
)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, model_cache, capsys, change, flags, message):
    results = tmp_path / "results"
    path = write_sweep(tmp_path, model_cache, results)
    doc = {**yaml.safe_load(path.read_text()), **change}
    path.write_text(yaml.safe_dump(doc))
    assert sweep(path, *flags) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err
    assert not results.exists()


def test_a_plain_merge_removes_the_last_selection_and_publish_copies_the_sweep_as_run(grid, tmp_path, capsys):
    from benchmark.reporting.publish import main as publish_main

    path, out = grid
    copy = tmp_path / "results"
    shutil.copytree(out.parent, copy)
    assert sweep(path, "--results-dir", str(copy), "--merge-only", "--select", "val_last_head_plus_dlp") == 0
    assert (copy / "grid" / "selection.csv").is_file() and (copy / "grid" / "selected_sweep.yaml").is_file()
    plain = tmp_path / "plain.yaml"
    doc = yaml.safe_load(path.read_text())
    doc.pop("select")
    plain.write_text(yaml.safe_dump(doc))
    capsys.readouterr()
    assert sweep(plain, "--results-dir", str(copy), "--merge-only") == 0
    # the merge prints what `python -m benchmark.reporting.leaderboard` prints: the table, then the differences
    out = capsys.readouterr().out
    assert CAPTIONS["task_incremental"] in out and "paired differences with l2sp[l2sp.alpha=" in out, out
    assert out.index("paired differences") < out.index("wrote ") and out.count("l2sp[l2sp.alpha=100]") >= 2
    left = {p.name for p in (copy / "grid").iterdir()}
    assert not left & {"selection.csv", "selection.md", "selected_sweep.yaml", "selected_config.yaml"}, left
    assert (copy / "grid" / "sweep.yaml").read_text() == plain.read_text()  # the sweep file as run, kept
    # publish refuses work no commit describes; a developer's checkout may hold uncommitted changes
    for manifest in (copy / "grid" / "cells").glob("*/manifest.json"):
        doc = json.loads(manifest.read_text())
        manifest.write_text(json.dumps({**doc, "git_revision": "0123abc"}))
    assert publish_main([str(copy / "grid"), str(tmp_path / "pub")]) == 0
    assert (tmp_path / "pub" / "sweep.yaml").read_text() == plain.read_text()


def test_a_criterion_without_its_rows_is_one_line_and_changes_nothing(grid, tmp_path, capsys):
    path, out = grid
    copy = tmp_path / "results"
    shutil.copytree(out.parent, copy)
    for csv in (copy / "grid" / "cells").glob("*/accuracy_long.csv"):  # as if eval.kinds had no lp
        frame = pd.read_csv(csv)
        frame[frame["kind"] != "lp"].to_csv(csv, index=False)
    board = (copy / "grid" / "leaderboard.csv").read_bytes()
    assert sweep(path, "--results-dir", str(copy), "--merge-only", "--select", "val_last_head_plus_dlp") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: select val_last_head_plus_dlp") and err.count("\n") == 1, err
    assert (copy / "grid" / "leaderboard.csv").read_bytes() == board
