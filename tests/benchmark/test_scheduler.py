"""The stage loop: order of stages, one head per task, heads kept, rows per stage."""

import pytest
import torch

from benchmark.loop.scheduler import make_stream, run_method
from benchmark.run.runner import check_inputs, prepare


@pytest.fixture
def setup(micro_cfg):
    micro_cfg.eval.kinds = ["head"]  # bookkeeping only: skip the probes
    sequence, _ = check_inputs(micro_cfg)
    return prepare(micro_cfg, sequence, progress=False)


def test_stream_is_task_incremental(setup):
    stream = make_stream([setup.tasks["shapes"], setup.tasks["digits"]], 20, seed=0)
    assert [e.task_labels for e in stream] == [[0], [1]]
    assert [len(e.dataset) for e in stream] == [20, 20]


def test_stage_order_and_head_bookkeeping(setup, monkeypatch):
    trained_order, heads_seen = [], []
    import benchmark.training.engine as engine_mod

    original = engine_mod.Engine.train

    def spy(self, exp, **kw):
        trained_order.append((self.stage_index, self.current_task.name, exp.task_labels[0]))
        heads_seen.append(sorted(self.model.heads.keys()))
        return original(self, exp, **kw)

    monkeypatch.setattr(engine_mod.Engine, "train", spy)
    result = run_method(setup, "finetune", seed=0, stage0=setup.tracker.evaluate(setup.bundle.model.visual, {}, 0))
    assert trained_order == [(1, "shapes", 0), (2, "digits", 1)]
    assert heads_seen == [["0"], ["0", "1"]]  # a new head per task, earlier heads kept
    stages = sorted({(r["stage"], r["trained_task"]) for r in result.rows})
    assert stages == [(0, "pretrained"), (1, "shapes"), (2, "digits")]
    assert [s["task"] for s in result.stages] == ["shapes", "digits"]


def test_untrained_tasks_use_the_zeroshot_head(setup):
    """A task without a head yet (digits at stage 1, eval-only textures) is scored with the
    zero-shot head on the current encoder: its head row equals its zs row."""
    setup.tracker.cfg.kinds = ["head", "zs"]
    stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
    result = run_method(setup, "finetune", seed=0, stage0=stage0)
    stage1 = {(r["eval_task"], r["kind"]): r["accuracy"] for r in result.rows if r["stage"] == 1}
    assert {task for task, _ in stage1} == {"shapes", "digits", "textures"}
    for untrained in ("digits", "textures"):
        assert stage1[(untrained, "head")] == stage1[(untrained, "zs")]
    stage2 = {(r["eval_task"], r["kind"]): r["accuracy"] for r in result.rows if r["stage"] == 2}
    assert stage2[("textures", "head")] == stage2[("textures", "zs")]  # eval-only: never a head of its own


def test_zeroshot_rows_repeat_stage0(setup):
    stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
    result = run_method(setup, "zeroshot", seed=0, stage0=stage0)
    by_stage = {}
    for r in result.rows:
        by_stage.setdefault(r["stage"], []).append((r["eval_task"], r["accuracy"]))
    assert by_stage[0] == by_stage[1] == by_stage[2]


def test_ldifs_reference_is_previous_stage_encoder(setup):
    """The reference copied at stage 2 equals the encoder as it was after stage 1."""
    from methods.ldifs import LDIFS

    snapshots = []
    original = LDIFS.before_training_exp

    def spy(self, strategy, **kw):
        snapshots.append({k: v.clone() for k, v in strategy.model.visual.state_dict().items()})
        original(self, strategy, **kw)
        ref = self.reference.state_dict()
        assert all(torch.equal(ref[k], snapshots[-1][k]) for k in ref)

    LDIFS.before_training_exp = spy
    try:
        run_method(setup, "ldifs", seed=0, stage0=[])
    finally:
        LDIFS.before_training_exp = original
    assert len(snapshots) == 2
    changed = any(not torch.equal(snapshots[0][k], snapshots[1][k]) for k in snapshots[0])
    assert changed  # stage 1 trained the encoder, so the stage-2 reference differs from the first
