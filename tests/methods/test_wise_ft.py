"""WiSE-FT: after a stage the encoder is exactly the interpolation of reference and fine-tuned weights."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from methods_testkit import Spy, micro_setup, run

from methods import build_method


def floats(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in state.items() if v.is_floating_point()}


@pytest.mark.parametrize("reference", ["previous", "pretrained"])
def test_weights_after_each_stage_are_the_interpolation(reference):
    alpha = 0.3
    setup = micro_setup()
    start: dict[int, dict] = {}
    tuned: dict[int, dict] = {}
    # Put before wise_ft: sees the encoder at the stage's start and the fine-tuned one before the mix.
    spy = Spy(
        before_training_exp=lambda s: start.__setitem__(s.stage_index, floats(s.model.visual.state_dict())),
        after_training_exp=lambda s: tuned.__setitem__(s.stage_index, floats(s.model.visual.state_dict())),
    )
    run(setup, "wise_ft", {"wise_ft": {"alpha": alpha, "reference": reference}}, spies=(spy,), spies_first=True)
    for stage in (1, 2):
        ref = start[stage] if reference == "previous" else floats(setup.tracker.encoders[0])
        mixed = setup.tracker.encoders[stage]
        assert any(not torch.equal(ft, ref[name]) for name, ft in tuned[stage].items())  # it did train
        for name, ft in tuned[stage].items():
            assert torch.equal(mixed[name], torch.lerp(ft, ref[name], 1 - alpha)), (stage, name)


def test_float_buffers_are_mixed_and_integer_buffers_kept():
    encoder = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4))
    strategy = SimpleNamespace(model=SimpleNamespace(visual=encoder))
    (wise,) = build_method("wise_ft", {"wise_ft": {"alpha": 0.5}})
    wise.before_training_exp(strategy)
    ref_mean = encoder[1].running_mean.clone()
    encoder.train()(torch.randn(8, 4) + 3)  # updates running stats and the counter
    tuned_mean = encoder[1].running_mean.clone()
    wise.after_training_exp(strategy)
    assert torch.equal(encoder[1].running_mean, torch.lerp(tuned_mean, ref_mean, 0.5))
    assert int(encoder[1].num_batches_tracked) == 1  # a counter, not a weight: kept as trained
