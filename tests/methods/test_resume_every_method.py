"""Every registered method's state survives a stage checkpoint: resuming after stage 1
gives exactly the rows of an uninterrupted run (Avalanche plugins' state included)."""

import shutil

import pytest
from methods_testkit import micro_setup, single_thread

from benchmark.run import scheduler
from benchmark.run.checkpoints import StageCheckpoints
from methods import METHODS

TRAINING_METHODS = [n for n in METHODS.names() if METHODS.get(n).trains]


@pytest.mark.parametrize("name", TRAINING_METHODS)
def test_resume_after_stage_1_matches_uninterrupted(name, tmp_path):
    setup = micro_setup("resnet")
    with single_thread():
        stage0 = setup.tracker.evaluate(setup.bundle.model.visual, {}, 0)
        full = scheduler.run_method(setup, name, 0, stage0, StageCheckpoints(tmp_path, name, 0, keep=True))
        ckpt = StageCheckpoints(tmp_path, name, 0).path
        shutil.copy(ckpt.with_name(f"{ckpt.stem}.stage1.pt"), ckpt)  # as if killed during stage 2
        resumed = scheduler.run_method(setup, name, 0, stage0, StageCheckpoints(tmp_path, name, 0))
    assert resumed.rows == full.rows
