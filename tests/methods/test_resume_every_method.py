"""Every registered method's state survives a stage checkpoint: resuming after stage 1
trains only the later stages and gives exactly the rows of an uninterrupted run (Avalanche
plugins' state included). A method whose state cannot be loaded fails the resume loudly:
it is not silently retrained from stage 1."""

import shutil

import pytest
from methods_testkit import micro_setup, single_thread

from benchmark.loop import scheduler
from benchmark.loop.checkpoints import StageCheckpoints
from methods import METHODS

TRAINING_METHODS = [n for n in METHODS.names() if METHODS.get(n)().trains()]


def _run_then_resume(name: str, tmp_path, monkeypatch, plugins_for_resume=None):
    """An uninterrupted run, then a run resumed from its stage-1 checkpoint; returns both
    results and how many stages each trained."""
    trained: list[str] = []
    real = scheduler._train_stage
    monkeypatch.setattr(scheduler, "_train_stage", lambda *a, **k: trained.append("stage") or real(*a, **k))
    setup = micro_setup("resnet")
    with single_thread():
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
        full = scheduler.run_method(setup, name, 0, stage0, StageCheckpoints(tmp_path, name, 0, keep=True))
        full_trained = len(trained)
        ckpt = StageCheckpoints(tmp_path, name, 0).path
        shutil.copy(ckpt.with_name(f"{ckpt.stem}.stage1.pt"), ckpt)  # as if killed during stage 2
        trained.clear()
        resumed = scheduler.run_method(
            setup, name, 0, stage0, StageCheckpoints(tmp_path, name, 0), plugins=plugins_for_resume
        )
    return full, resumed, full_trained, len(trained)


@pytest.mark.parametrize("name", TRAINING_METHODS)
def test_resume_after_stage_1_matches_uninterrupted(name, tmp_path, monkeypatch):
    full, resumed, full_trained, resumed_trained = _run_then_resume(name, tmp_path, monkeypatch)
    stages = len(full.stages)
    assert (full_trained, resumed_trained) == (stages, stages - 1)  # resumed after stage 1, not retrained
    assert resumed.rows == full.rows


def test_a_method_whose_state_does_not_load_fails_the_resume(tmp_path, monkeypatch):
    """The test above can fail: a load_state_dict that raises is a bug the resume surfaces."""
    from methods import build_method

    plugins = build_method("ldifs", {})

    def broken(state, context):
        raise RuntimeError("cannot load my own state")

    plugins[0].load_state_dict = broken
    with pytest.raises(RuntimeError, match="cannot load my own state"):
        _run_then_resume("ldifs", tmp_path, monkeypatch, plugins_for_resume=plugins)
