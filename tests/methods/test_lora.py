"""LoRA through peft: only adapters and heads train, the merge is W + (alpha / r) B A, both towers."""

from __future__ import annotations

import pytest
import torch
from methods_testkit import Spy, micro_setup, run

from benchmark.errors import UserError
from methods import build_method

# One targeted weight per tower: a ViT block's MLP input (Linear) and a ResNet bottleneck's 3x3 conv.
PROBED = {"vit": "transformer.resblocks.0.mlp.c_fc", "resnet": "layer1.0.conv2"}


def pretrained_like(tower: str, lr: float = 1e-3):
    """The micro setup, with a ResNet's last BatchNorm scale of every block set to 1.

    A freshly initialised ModifiedResNet zeroes them (open_clip, after Goyal et al. 2017), so
    no gradient reaches a block's convolutions until they move; LoRA leaves them frozen, so
    on a random tower its conv adapters would never train. Pretrained towers have them
    non-zero."""
    setup = micro_setup(tower, lr=lr)
    with torch.no_grad():
        for name, p in setup.bundle.model.visual.named_parameters():
            if name.endswith("bn3.weight"):
                p.fill_(1.0)
    return setup


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_only_adapters_and_heads_receive_gradients(tower):
    checked: list[int] = []

    def check(s) -> None:
        named = dict(s.model.named_parameters())
        with_grad = {n for n, p in named.items() if p.grad is not None}
        lora = {n for n in named if "lora_" in n}
        assert lora and lora <= with_grad  # every adapter is trained
        assert any(float(named[n].grad.abs().max()) > 0 for n in lora)
        assert all("lora_" in n or n.startswith("heads.") for n in with_grad), sorted(with_grad - lora)
        assert all(not p.requires_grad for n, p in named.items() if n.startswith("visual.") and "lora_" not in n)
        checked.append(len(lora))

    setup = pretrained_like(tower)
    result, _ = run(setup, "lora", spies=(Spy(after_backward=check),))
    assert result.status == "ok" and len(checked) == 4  # 2 steps x 2 stages


@pytest.mark.parametrize("tower", ["vit", "resnet"])
def test_merged_weights_are_base_plus_scaled_low_rank_product(tower):
    """Stage 1's encoder, as the tracker sees it, is W + (alpha / r) B A for each targeted
    weight, and the tower is a plain, fully trainable open_clip tower again."""
    before_merge: dict[str, torch.Tensor] = {}

    def grab(s) -> None:
        if s.stage_index == 1:
            for n, p in s.model.visual.named_parameters():
                if n.startswith(PROBED[tower] + "."):
                    before_merge[n[len(PROBED[tower]) + 1 :]] = p.detach().clone()

    setup = pretrained_like(tower, lr=1e-2)
    result, plugins = run(
        setup, "lora", {"lora": {"rank": 2, "alpha": 3.0}}, spies=(Spy(after_training_exp=grab),), spies_first=True
    )
    base, a, b = (
        before_merge["base_layer.weight"],
        before_merge["lora_A.default.weight"],
        before_merge["lora_B.default.weight"],
    )
    assert float(b.abs().max()) > 0  # B left zero after training would make the check vacuous
    # Linear: B [out, r] @ A [r, in]; Conv2d: A is an r-channel conv of W's kernel, B a 1x1 conv.
    delta = torch.einsum("or,rikl->oikl", b.flatten(1), a) if a.dim() == 4 else b @ a
    merged = setup.tracker.encoders[1][PROBED[tower] + ".weight"]
    torch.testing.assert_close(merged, base + 1.5 * delta, rtol=1e-5, atol=1e-6)
    visual = setup.tracker.encoders[2]
    assert not any("lora_" in k or "base_layer" in k for k in visual)  # merged away, names as before
    assert plugins[0].tuner is None


def test_the_tower_is_trainable_again_after_the_merge():
    seen: list[bool] = []
    spy = Spy(after_training_exp=lambda s: seen.append(all(p.requires_grad for p in s.model.visual.parameters())))
    run(micro_setup("resnet"), "lora", spies=(spy,))
    assert seen == [True, True]


@pytest.mark.parametrize("spec", ["lora+ldifs", "lora+replay"])
def test_lora_composes(spec):
    result, _ = run(micro_setup("vit"), spec)
    assert result.status == "ok"


def test_bad_hyperparameters_are_one_line():
    with pytest.raises(UserError, match="rank=0 must be >= 1"):
        build_method("lora", {"lora": {"rank": 0}})
    with pytest.raises(UserError, match="dropout=1.0 must be in"):
        build_method("lora", {"lora": {"dropout": 1}})
    setup = micro_setup("vit")
    with pytest.raises(UserError, match="target_modules='no_such_layer'"):
        run(setup, "lora", {"lora": {"target_modules": "no_such_layer"}})
