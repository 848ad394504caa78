"""LP-FT: each stage's head starts from a linear probe, not the zero-shot head."""

from __future__ import annotations

import torch
from methods_testkit import Spy, micro_setup, run

from methods import build_method


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


def test_the_first_head_is_the_probe_on_the_pre_trained_encoder_even_when_the_config_says_zeroshot():
    setup = micro_setup()
    assert setup.cfg.train.head_init == "zeroshot"  # the method's own rule wins over the run's
    initial = {}
    spy = Spy(before_training_exp=lambda s: initial.setdefault(s.stage_index, s.model.heads["0"].weight.clone()))
    run(setup, "lp_ft", spies=(spy,))
    probe = setup.tracker.fit_probe(setup.bundle.model.visual, setup.tracker.sets["alpha"], head_init=True)
    torch.testing.assert_close(initial[1], probe.weight)  # L-BFGS on the same features: the same probe


def test_lp_ft_composes_with_regularisers():
    assert [m.name for m in build_method("lp_ft+ldifs", {})] == ["lp_ft", "ldifs"]
