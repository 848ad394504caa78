"""LP-FT: each stage's head starts from a linear probe, not the zero-shot head."""

from __future__ import annotations

import torch
from methods_testkit import Spy, micro_setup, run

from methods import METHODS, build_method


def test_head_starts_from_a_probe():
    setup = micro_setup()
    initial = {}

    def record(strategy):
        label = str(strategy.experience.task_label)
        initial[strategy.stage_index] = strategy.model.heads[label].weight.detach().clone()

    run(setup, "lp_ft", spies=(Spy(before_training_exp=record),))
    for stage, task in ((1, "alpha"), (2, "beta")):
        zeroshot = setup.tracker.sets[task].zeroshot
        assert initial[stage].shape == zeroshot.shape
        assert not torch.allclose(initial[stage], zeroshot)
        assert torch.count_nonzero(initial[stage]) > 0


def test_lp_ft_is_a_flag_and_composes_with_regularisers():
    assert METHODS.get("lp_ft").head_init == "lp"
    assert [m.name for m in build_method("lp_ft+ldifs", {})] == ["lp_ft", "ldifs"]
