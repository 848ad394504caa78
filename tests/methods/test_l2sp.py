"""L2-SP's gradient, added straight to .grad with foreach ops, equals autograd's of the penalty."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from methods_testkit import Spy, micro_setup, run, tiny_clip

from benchmark.models.classifier import ClipClassifier
from methods import build_method


def strategy_with(model: ClipClassifier) -> SimpleNamespace:
    return SimpleNamespace(model=model)


def test_foreach_gradient_equals_autograd_gradient_of_the_penalty():
    model = ClipClassifier(tiny_clip().visual)
    model.add_head(0, torch.randn(3, 16))
    (l2sp,) = build_method("l2sp", {"l2sp": {"alpha": 0.7}})
    l2sp.before_training_exp(strategy_with(model))  # anchors = the weights now
    anchors = [p.detach().clone() for p in model.visual.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.01)  # "training" moved every weight, heads included
    base = [torch.randn_like(p) for p in model.visual.parameters()]
    for p, g in zip(model.visual.parameters(), base):
        p.grad = g.clone()
    l2sp.after_backward(strategy_with(model))

    weights = list(model.visual.parameters())
    copies = [p.detach().clone().requires_grad_(True) for p in weights]
    penalty = 0.7 * sum((c - a).pow(2).sum() for c, a in zip(copies, anchors))
    expected = torch.autograd.grad(penalty, copies)
    for p, g, e in zip(weights, base, expected):
        torch.testing.assert_close(p.grad, g + e, rtol=1e-6, atol=1e-7)
    assert float(l2sp.penalty()) == pytest.approx(float(penalty), rel=1e-5)
    assert all(p.grad is None for p in model.heads.parameters())  # heads are not penalised


@pytest.mark.parametrize("reference, anchor_stage", [("previous", 1), ("pretrained", 0)])
def test_anchor_is_the_stage_start_or_the_pretrained_encoder(reference, anchor_stage):
    setup = micro_setup()
    anchors: dict[int, dict[str, torch.Tensor]] = {}

    def record(strategy):  # runs after l2sp's own before_training_exp, which sets the anchors
        l2sp = next(p for p in strategy.plugins if getattr(p, "name", "") == "l2sp")
        names = [n for n, _ in strategy.model.visual.named_parameters()]
        anchors[strategy.stage_index] = dict(zip(names, l2sp.anchors))

    run(setup, "l2sp", {"l2sp": {"reference": reference}}, spies=(Spy(before_training_exp=record),))
    expected = setup.tracker.encoders[anchor_stage]  # the encoder after stage 1, or the pretrained one
    for name, anchor in anchors[2].items():
        assert torch.equal(anchor, expected[name]), name
