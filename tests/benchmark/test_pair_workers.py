"""A run's (method, seed) pairs on worker processes (benchmark/run/pair_workers.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd
import pytest

from benchmark.errors import UserError
from benchmark.run.pair_workers import worker_threads
from benchmark.run.runner import run
from benchmark.rundir import FEATURE_DRIFT_CSV, LONG_CSV, MANIFEST_JSON


def _rows(folder) -> pd.DataFrame:
    return pd.read_csv(folder / LONG_CSV)


@pytest.mark.slow  # two spawned interpreters and two runs: ~30 s; .ci/run's slow line runs it
def test_two_workers_give_the_rows_one_process_gives(micro_cfg, tmp_path):
    micro_cfg.methods = ["zeroshot", "replay"]  # one that does not train, one with Avalanche state
    micro_cfg.seeds = [0, 1]
    micro_cfg.eval.drift_images = 16
    one = run(micro_cfg, progress=False)
    micro_cfg.results_dir = str(tmp_path / "two")
    two = run(micro_cfg, progress=False, workers=2)
    pd.testing.assert_frame_equal(_rows(one), _rows(two))  # every accuracy, bit for bit, in the same order
    pd.testing.assert_frame_equal(pd.read_csv(one / FEATURE_DRIFT_CSV), pd.read_csv(two / FEATURE_DRIFT_CSV))
    manifest = json.loads((two / MANIFEST_JSON).read_text())
    assert manifest["workers"] == 2
    runs = [(r["method"], r["seed"]) for r in manifest["runs"]]
    assert runs == [(m, s) for s in (0, 1) for m in micro_cfg.methods]  # the run's order, not the finishing order
    assert all(len(r["stages"]) == 2 for r in manifest["runs"] if r["method"] != "zeroshot")
    assert "train_seconds" in manifest["runs"][1]["stages"][0]  # the workers' own timings came back
    assert not (two / "checkpoints").exists()


# What a user's method file (a --plugins file, which the workers import too) begins with:
# MARK is a file in the test's folder through which the method's processes signal each other.
PLUGIN_HEADER = """
import os
import signal
import time
from pathlib import Path

from benchmark.errors import UserError
from methods import Method, register_method

MARK = Path(MARK_PATH)
"""


def user_method(tmp_path: Path, body: str) -> tuple[Path, Path]:
    """(the plugin file, its marker file) for a method whose class is ``body``."""
    plugin, mark = tmp_path / "user" / "method.py", tmp_path / "mark"
    plugin.parent.mkdir()
    plugin.write_text(PLUGIN_HEADER.replace("MARK_PATH", repr(str(mark))) + body)
    return plugin, mark


# At stage 2, seed 1 says so in the marker file and then would take minutes; seed 0 waits
# for that file and stops with a user error: the run must stop at once, seed 1's worker
# ended rather than waited for.
FAILING_METHOD = """
@register_method("stops_at_stage_2")
class StopsAtStage2(Method):
    needs_encoder_training = True

    def before_training_exp(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter != 1:
            return
        if strategy.seed == 1:
            MARK.write_text("seed 1 is in stage 2")
            time.sleep(300)
        for _ in range(600):
            if MARK.exists():
                break
            time.sleep(0.1)
        raise UserError("stand-in: this method refuses stage 2")
"""


def test_a_user_error_in_one_worker_stops_the_whole_run_at_once(micro_cfg, tmp_path, registered_here):
    plugin, _ = user_method(tmp_path, FAILING_METHOD)
    micro_cfg.plugins = [str(plugin)]
    micro_cfg.methods = ["stops_at_stage_2"]
    micro_cfg.seeds = [0, 1, 2]
    started = time.monotonic()
    with pytest.raises(UserError, match=r"\[stops_at_stage_2 seed 0\] stand-in: this method refuses stage 2"):
        run(micro_cfg, progress=False, workers=2)
    assert time.monotonic() - started < 120  # seed 1's worker was ended, not waited for
    assert not [p for p in Path(micro_cfg.results_dir).iterdir() if (p / LONG_CSV).exists()]  # no complete run
    log = next(Path(micro_cfg.results_dir).glob(".*.partial/run.log")).read_text()
    for seed in (0, 1):  # both workers wrote their lines into the run's log (the plugin loaded in each)
        assert f"[stops_at_stage_2 seed {seed}] stage 1 " in log
    assert "seed 2]" not in log  # the pair not started was dropped


@pytest.mark.parametrize("workers", [0, -1])
def test_workers_below_one_are_refused(micro_cfg, workers):
    with pytest.raises(UserError, match=f"--workers {workers} must be >= 1"):
        run(micro_cfg, progress=False, workers=workers)


def test_worker_threads_split_the_cores_unless_the_config_sets_them(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_threads(0, 2) == 4
    assert worker_threads(0, 16) == 1
    assert worker_threads(3, 2) == 3


# Fine-tuning that kills its own process once, at the start of seed 1's stage 2 (the marker
# file says it happened): a worker dying as under the out-of-memory killer.
DIES_ONCE = """
@register_method("dies_once")
class DiesOnce(Method):
    needs_encoder_training = True

    def before_training_exp(self, strategy, **kwargs):
        if strategy.clock.train_exp_counter == 1 and strategy.seed == 1 and not MARK.exists():
            MARK.write_text("killed")
            os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.slow  # a worker killed and the run finished in this process: ~40 s; .ci/run's slow line
def test_a_dead_worker_leaves_its_pairs_to_this_process_which_resumes_them(micro_cfg, tmp_path, registered_here):
    plugin, mark = user_method(tmp_path, DIES_ONCE)
    micro_cfg.plugins, micro_cfg.methods, micro_cfg.seeds = [str(plugin)], ["dies_once"], [0, 1]
    micro_cfg.results_dir = str(tmp_path / "two")
    recovered = run(micro_cfg, progress=False, workers=2)
    assert mark.exists()  # the worker did die
    log = (recovered / "run.log").read_text()
    assert "[dies_once seed 1] resuming after stage 1" in log  # this process took its pair over
    micro_cfg.results_dir = str(tmp_path / "one")
    straight = run(micro_cfg, progress=False)  # the marker is there: nothing dies
    assert (recovered / LONG_CSV).read_bytes() == (straight / LONG_CSV).read_bytes()
