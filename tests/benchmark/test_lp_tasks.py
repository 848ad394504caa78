"""``eval.lp_tasks``: which tasks get a linear probe after each stage. In a class-incremental
run ("auto") only the eval-only tasks are probed; every other number of the run is unchanged
(the head and zero-shot rows, the probe of the eval-only task, and the global RNG a replay
buffer draws from), and "all" keeps the earlier behaviour, a probe per class group."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "methods"))
from methods_testkit import micro_setup, random_task, run, tokenize  # noqa: E402

from benchmark.config import EvalConfig, RunConfig, config_hash, from_dict  # noqa: E402
from benchmark.errors import UserError  # noqa: E402
from benchmark.evaluation.heads import zeroshot_weights  # noqa: E402
from benchmark.evaluation.tracker import EvalSet, probed_tasks  # noqa: E402
from benchmark.reporting.reports import summarise  # noqa: E402
from tasks import load_sequence  # noqa: E402


def test_the_key_takes_three_choices_and_leaves_default_run_names_alone():
    assert EvalConfig().lp_tasks == "auto"
    with pytest.raises(UserError, match="eval.lp_tasks='groups' is not valid; valid choices: auto, all, eval_only"):
        from_dict(RunConfig, {"eval": {"lp_tasks": "groups"}})
    default = RunConfig()
    assert config_hash(default) == config_hash(from_dict(RunConfig, {"eval": {"lp_tasks": "auto"}}))
    assert config_hash(default) != config_hash(from_dict(RunConfig, {"eval": {"lp_tasks": "all"}}))


def test_auto_probes_only_the_eval_only_tasks_of_a_class_incremental_sequence():
    cil, til = load_sequence("objects_cil"), load_sequence("default")
    assert probed_tasks("auto", cil) == frozenset({"textures"})
    assert probed_tasks("all", cil) is None and probed_tasks("auto", til) is None
    assert probed_tasks("eval_only", til) == frozenset(til.eval_only)


def _cil_run(lp_tasks: str) -> tuple[pd.DataFrame, torch.Tensor]:
    """replay (it draws from the global RNG) on the micro class-incremental sequence, with an
    eval-only task; the rows and the RNG state at the end."""
    setup = micro_setup("resnet", kinds=("head", "lp", "zs"), class_incremental=True)
    extra = random_task("paint", ["warm", "cold", "dark"], 3)
    zs = zeroshot_weights(setup.bundle.model, tokenize, extra.prompts(), setup.device)
    setup.tracker.sets["paint"] = EvalSet(
        extra, extra.train.images, extra.train.labels, extra.test.images, extra.test.labels, zs
    )
    setup.sequence.eval_only = ["paint"]
    setup.tracker.probed = probed_tasks(lp_tasks, setup.sequence)
    result, _ = run(setup, "replay", {"replay": {"mem_size": 8, "batch_size_mem": 4}})
    return pd.DataFrame(result.rows), torch.get_rng_state()


def test_auto_drops_the_groups_probes_and_changes_no_other_number():
    auto, rng_auto = _cil_run("auto")
    full, rng_full = _cil_run("all")
    probes = full[full["kind"] == "lp"]
    assert set(probes["eval_task"]) == {"hues-g1", "hues-g2", "paint"}  # the earlier behaviour, still reachable
    assert set(auto.loc[auto["kind"] == "lp", "eval_task"]) == {"paint"}
    kept = full[(full["kind"] != "lp") | (full["eval_task"] == "paint")].reset_index(drop=True)
    pd.testing.assert_frame_equal(auto.reset_index(drop=True), kept)  # bit for bit, stage 1's probes too
    assert torch.equal(rng_auto, rng_full)
    summary = summarise(auto.assign(status="ok")).set_index(["method", "kind"])
    assert {"inc_avg", "inc_last", "delta_final_untrained"} <= set(summary.columns)
    assert not pd.isna(summary.loc[("replay", "head"), "inc_last"])
    assert not pd.isna(summary.loc[("replay", "lp"), "delta_final_untrained"])  # dLP, on the eval-only task
    lp = summary.loc[("replay", "lp")]  # what reads a group's probe is empty (docs/class_incremental.md)
    assert lp[["avg_acc_final", "inc_avg", "inc_last", "forgetting_if", "delta_mean_untrained"]].isna().all()
