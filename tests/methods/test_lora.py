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


def adapted_vit(rank: int = 2, alpha: float = 3.0):
    """A tiny open_clip ViT tower in float64 with fresh adapters, every B made non-zero
    (B = 0 at injection would make A's gradient vanish and the merge trivial)."""
    from methods_testkit import tiny_clip

    from methods.lora import LoRA, inject

    visual = tiny_clip(0, "vit").visual.double()
    tuner = inject(visual, LoRA.Params(rank=rank, alpha=alpha))
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, p in visual.named_parameters():
            if "lora_B" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    return visual, tuner, x


def low_rank_updates(visual) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Merged-weight name -> (base weight, expected W + (alpha / r) B A), for every adapter."""
    from methods.lora import AttentionLoRA

    out = {}
    for name, m in visual.named_modules():
        if isinstance(m, AttentionLoRA):
            for part, key in (("in", "in_proj_weight"), ("out", "out_proj.weight")):
                a, b = getattr(m, f"lora_A_{part}"), getattr(m, f"lora_B_{part}")
                w = m.base.get_parameter(key)
                out[f"{name}.{key}"] = (w.detach().clone(), (w + m.scaling * b @ a).detach().clone())
        elif hasattr(m, "lora_A") and "default" in getattr(m, "lora_A", {}):
            a, b, w = m.lora_A["default"].weight, m.lora_B["default"].weight, m.base_layer.weight
            out[f"{name}.weight"] = (w.detach().clone(), (w + m.scaling["default"] * b @ a).detach().clone())
    return out


def test_every_adapted_vit_weight_merges_to_base_plus_scaled_product():
    """Attention (packed q/k/v and the output projection) and the MLP's Linears of every block:
    merged W = W + (alpha / r) B A, once (peft 0.21.2 adds the output projection's twice), and
    the merged tower computes what the adapted one did."""
    from methods.lora import merge_attention

    visual, tuner, x = adapted_vit()
    expected = low_rank_updates(visual)
    blocks = len(visual.transformer.resblocks)
    assert len(expected) == 4 * blocks  # in_proj, out_proj, c_fc, c_proj per block
    assert any(k.endswith("attn.out_proj.weight") for k in expected)
    with torch.no_grad():
        before = visual(x)
    merge_attention(visual)
    merged = tuner.merge_and_unload()
    state = merged.state_dict()
    for name, (base, want) in expected.items():
        assert not torch.equal(base, want), name
        torch.testing.assert_close(state[name], want, rtol=0, atol=1e-12, msg=name)
    with torch.no_grad():
        torch.testing.assert_close(merged(x), before, rtol=0, atol=1e-10)


def test_adapter_gradients_equal_finite_differences():
    """The gradient autograd gives every adapter parameter is the derivative of the function
    the forward computes (central differences in float64, a few entries per parameter)."""
    visual, _, x = adapted_vit()
    r = torch.randn(visual(x).shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def loss() -> torch.Tensor:
        return (visual(x) * r).sum()

    params = {n: p for n, p in visual.named_parameters() if p.requires_grad}
    assert params and all("lora_" in n for n in params)
    grads = dict(zip(params, torch.autograd.grad(loss(), list(params.values()))))
    eps = 1e-6
    for name, p in params.items():
        flat = p.detach().view(-1)
        for i in torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(1))[:3].tolist():
            with torch.no_grad():
                keep = float(flat[i])
                flat[i] = keep + eps
                up = float(loss())
                flat[i] = keep - eps
                down = float(loss())
                flat[i] = keep
            numeric = (up - down) / (2 * eps)
            assert float(grads[name].view(-1)[i]) == pytest.approx(numeric, rel=1e-5, abs=1e-8), name


def test_targeting_an_attention_output_projection_alone_is_refused():
    from methods_testkit import tiny_clip

    from methods.lora import LoRA, inject

    with pytest.raises(UserError, match="inside a MultiheadAttention that never calls it"):
        inject(tiny_clip(0, "vit").visual, LoRA.Params(target_modules="out_proj"))


def test_attention_only_targets_need_no_peft_layer():
    from methods_testkit import tiny_clip

    from methods.lora import AttentionLoRA, LoRA, inject

    visual = tiny_clip(0, "vit").visual
    assert inject(visual, LoRA.Params(target_modules="attn")) is None
    assert sum(isinstance(m, AttentionLoRA) for m in visual.modules()) == len(visual.transformer.resblocks)
    assert all("lora_" in n for n, p in visual.named_parameters() if p.requires_grad)
