"""Linear probing: the encoder never changes, the heads do."""

from __future__ import annotations

import pytest
import torch
from methods_testkit import encoder_change, micro_setup, run


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_encoder_frozen_heads_trained(tower):
    setup = micro_setup(tower)
    run(setup, "linear_probe")
    # BatchNorm running statistics included: a frozen ResNet in train mode would drift
    assert encoder_change(setup.tracker.encoders[0], setup.tracker.encoders[2]) == 0
    head = setup.tracker.heads[1]["alpha"]
    assert not torch.allclose(head.weight, setup.tracker.sets["alpha"].zeroshot)  # trained from ZS-init


@pytest.mark.parametrize("probe", ["fast", "authors"])
def test_head_is_the_trackers_converged_probe(probe):
    setup = micro_setup("resnet", kinds=("head", "lp", "zs"))
    setup.cfg.eval.probe, setup.cfg.eval.probe_steps = probe, 30
    result, _ = run(setup, "linear_probe")
    acc = {(r["stage"], r["eval_task"], r["kind"]): r["accuracy"] for r in result.rows}
    for stage, trained in ((1, ["alpha"]), (2, ["alpha", "beta"])):
        for task in trained:  # a frozen tower: the head scores exactly what the tracker's probe does
            assert acc[(stage, task, "head")] == acc[(stage, task, "lp")]
