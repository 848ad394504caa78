"""LoRA: low-rank adapters on the image tower (Hugging Face ``peft``), merged after each stage.

Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022. Each targeted
weight W is frozen and a trainable product is added beside it, W + (alpha / r) B A, with
A [r, in] random and B [out, r] zero at the start (so the model is unchanged before the
first step). The adapters come from ``peft`` (``LoraModel`` on ``model.visual`` only, so the
text tower, which the tracker's zero-shot head uses, is never touched); the task heads
train as in fine-tuning.

Lifecycle, one fresh adapter per stage:

- ``before_training`` (the engine builds the stage's optimiser right after it, from what
  requires grad): inject adapters into the image tower; peft freezes every other weight
  of the tower, the heads stay trainable.
- ``after_training_exp``: merge the adapters into the tower (``merge_and_unload``: the
  original module classes come back with W <- W + (alpha / r) B A) and make the tower's
  weights trainable again, for methods composed after this one and for the next stage.

Why merge rather than keep one adapter per stage: the tracker's linear probe and zero-shot
evaluations (and the next stage) must see the encoder as adapted, a plain open_clip tower
that every other part of the suite (LDIFS taps, checkpoints, WiSE-FT mixing) already knows;
merging makes the continual model one encoder, as sequential fine-tuning does. Adapters
kept per stage would need a task-aware tower at evaluation, which the task-agnostic probes
of concept forgetting do not have.

Targets (``target_modules``): ``auto`` picks, for open_clip's ViT, every residual block's
``attn`` (an ``nn.MultiheadAttention``: its packed q/k/v in-projection and its output
projection), ``c_fc`` and ``c_proj``; for ModifiedResNet, the bottleneck convolutions
(``layerK.J.conv1/2/3``; not the attention pool's projections, which it reads as raw
weights). Otherwise a comma-separated list of module-name suffixes, or ``re:<regex>``
matched against the full module name inside the tower (peft's matching rules).

Attention modules get the suite's own adapter (``AttentionLoRA``), not peft's: peft's
MultiheadAttention LoRA (0.15 to 0.21.2, the newest release; huggingface/peft PR #3774,
open) adds the output projection's update twice, once as a tensor on the graph and once
into the weight's storage: the forward pass and the merge compute W + 2 (alpha / r) B A,
while the gradient is that of W + (alpha / r) B A, half the true one. ``AttentionLoRA``
computes both projections' weights W + (alpha / r) B A functionally for each forward
(``torch.func.functional_call``, so autograd sees the whole product) and adds the update
once at the merge (tested against finite differences). Targeting the output projection
alone (``attn.out_proj``) is refused: MultiheadAttention reads its weight without calling
it, so an adapter there would never act. Linear and convolution layers go through peft
(its merges of those are exact). ``dropout`` applies to peft's adapters only: an attention
adapter changes the projection weights, so there is no adapter input to drop.

Everything else in the tower is frozen, BatchNorm scales and shifts included (running
statistics still update in training mode), as in standard LoRA.

``import peft`` loads ``transformers`` (seconds), so it happens inside the method, when
the first stage starts, never at the suite's start-up.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Optional, Union

import torch
import torch.nn as nn

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.training.method import EngineView, Method, register_method

VIT_TARGETS = ["attn", "c_fc", "c_proj"]
RESNET_TARGETS = r"conv[123]|layer\d+\.\d+\.(conv[123]|downsample\.0)"


def default_targets(visual: nn.Module) -> Union[list[str], str]:
    """peft ``target_modules`` fitting an open_clip image tower (see the module doc)."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    if isinstance(visual, VisionTransformer):
        return list(VIT_TARGETS)
    if isinstance(visual, ModifiedResNet):
        return RESNET_TARGETS
    raise UserError(
        f"hparams.lora.target_modules=auto has no default for image tower {type(visual).__name__}; "
        "valid: auto (open_clip ViT, ModifiedResNet), a comma-separated list of module names, re:<regex>"
    )


def parse_targets(text: str, visual: nn.Module) -> Union[list[str], str]:
    if text == "auto":
        return default_targets(visual)
    if text.startswith("re:"):
        return text[3:]
    return [t.strip() for t in text.split(",") if t.strip()]


class AttentionLoRA(nn.Module):
    """LoRA on an ``nn.MultiheadAttention``: W + (alpha / r) B A for its packed in-projection
    [3E, E] and for its output projection [E, E], each with its own A [r, E] (Kaiming-uniform,
    as peft and Hu et al.) and B (zeros). The base module stays frozen; each forward calls it
    with the adapted weights substituted (``torch.func.functional_call``)."""

    def __init__(self, base: nn.MultiheadAttention, rank: int, alpha: float) -> None:
        super().__init__()
        if not base._qkv_same_embed_dim:
            raise UserError("hparams.lora: attention with separate q/k/v weights is not supported; valid: packed q/k/v")
        self.base = base
        self.scaling = alpha / rank
        weight, e = base.in_proj_weight, base.embed_dim
        self.lora_A_in = nn.Parameter(weight.new_empty(rank, e))
        self.lora_B_in = nn.Parameter(weight.new_zeros(3 * e, rank))
        self.lora_A_out = nn.Parameter(weight.new_empty(rank, e))
        self.lora_B_out = nn.Parameter(weight.new_zeros(e, rank))
        for a in (self.lora_A_in, self.lora_A_out):
            nn.init.kaiming_uniform_(a, a=math.sqrt(5))

    def adapted(self) -> dict[str, torch.Tensor]:
        """The base module's weights with the scaled low-rank updates, on the autograd graph."""
        return {
            "in_proj_weight": self.base.in_proj_weight + self.scaling * (self.lora_B_in @ self.lora_A_in),
            "out_proj.weight": self.base.out_proj.weight + self.scaling * (self.lora_B_out @ self.lora_A_out),
        }

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return torch.func.functional_call(self.base, self.adapted(), args, kwargs)

    @torch.no_grad()
    def merged(self) -> nn.MultiheadAttention:
        """The base module with W <- W + (alpha / r) B A, once, for both projections."""
        weights = self.adapted()
        self.base.in_proj_weight.copy_(weights["in_proj_weight"])
        self.base.out_proj.weight.copy_(weights["out_proj.weight"])
        return self.base


def _matches(name: str, targets: Union[list[str], str]) -> bool:
    """peft's rule: a regex matches the whole name; a list entry the name or its dotted suffix."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


def split_targets(visual: nn.Module, p: LoRA.Params) -> tuple[list[str], list[str]]:
    """(attention modules for ``AttentionLoRA``, other module names for peft) the targets name."""
    targets = parse_targets(p.target_modules, visual)
    modules = dict(visual.named_modules())
    attention = [n for n, m in modules.items() if isinstance(m, nn.MultiheadAttention)]
    matched = [n for n in modules if n and _matches(n, targets)]
    if not matched:
        raise UserError(
            f"hparams.lora.target_modules={p.target_modules!r} matches no module of the image tower; "
            "valid: auto, a comma-separated list of module names, re:<regex>"
        )
    chosen = [n for n in matched if n in attention]
    others = []
    for name in matched:
        owner = next((a for a in attention if name.startswith(a + ".")), None)
        if owner is not None and owner not in chosen:
            raise UserError(
                f"hparams.lora.target_modules={p.target_modules!r} names {name!r}, inside a MultiheadAttention "
                f"that never calls it; valid: the attention module itself ({owner!r})"
            )
        if owner is None and name not in chosen:
            others.append(name)
    return chosen, others


def inject(visual: nn.Module, p: LoRA.Params) -> Any:
    """Add fresh adapters to ``visual`` in place; return peft's tuner (for the merge; None
    when only attention modules are targeted). Every other weight of the tower is frozen."""
    attention, others = split_targets(visual, p)
    tuner = None
    if others:
        import peft

        cfg = peft.LoraConfig(r=p.rank, lora_alpha=p.alpha, lora_dropout=p.dropout, target_modules=others, bias="none")  # type: ignore[arg-type]
        try:
            tuner = peft.LoraModel(visual, cfg, "default")
        except (ValueError, TypeError) as e:  # peft: a module type it cannot adapt
            raise UserError(f"hparams.lora.target_modules={p.target_modules!r}: {str(e).splitlines()[0]}") from None
    for name, param in visual.named_parameters():
        param.requires_grad_("lora_" in name)
    for name in attention:
        parent, _, child = name.rpartition(".")
        owner = visual.get_submodule(parent) if parent else visual
        setattr(owner, child, AttentionLoRA(getattr(owner, child), p.rank, p.alpha))
    return tuner


def merge_attention(visual: nn.Module) -> None:
    """Replace every ``AttentionLoRA`` in ``visual`` by its merged MultiheadAttention."""
    for name, module in list(visual.named_modules()):
        if isinstance(module, AttentionLoRA):
            parent, _, child = name.rpartition(".")
            setattr(visual.get_submodule(parent) if parent else visual, child, module.merged())


@register_method("lora")
class LoRA(Method):
    """Low-rank adapters (peft) on the image tower, trained with the heads and merged after each stage."""

    paper = "Hu et al., ICLR 2022 (LoRA), through Hugging Face peft"
    needs_encoder_training = True

    @dataclass
    class Params:
        rank: Annotated[int, Range(low=1)] = 8
        alpha: Annotated[float, Range(low=0, open_low=True)] = 16.0  # the product is scaled by alpha / rank
        dropout: Annotated[float, Range(low=0, high=1)] = (
            0.0  # on the adapter's input (peft's lora_dropout); 1 refused below
        )
        target_modules: str = "auto"  # auto | comma-separated module names | re:<regex>

    def validate(self) -> None:
        """The open upper bound the field types cannot say (the rest is declared on ``Params``)."""
        p = self.params
        if not p.dropout < 1:
            raise UserError(f"hparams.lora.dropout={p.dropout!r} must be in [0, 1)")

    def __init__(self, params: Optional[LoRA.Params] = None) -> None:
        super().__init__(params)
        self.tuner: Any = None  # peft's LoraModel during a stage (if it adapts anything); None between stages
        self.adapting = False  # adapters are in the tower (a stage is running)

    def __getstate__(self) -> dict:
        """Checkpoints are written between stages, when the adapters are already merged."""
        return {**self.__dict__, "tuner": None, "adapting": False}

    def before_training(self, strategy: EngineView, **kwargs) -> None:
        self.tuner = inject(strategy.model.visual, self.params)  # the same module, now with adapters
        self.adapting = True

    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        if not self.adapting:
            return
        merge_attention(strategy.model.visual)
        if self.tuner is not None:
            strategy.model.visual = self.tuner.merge_and_unload()
        strategy.model.visual.requires_grad_(True)  # the adapters froze every merged weight
        self.tuner, self.adapting = None, False


def adapter_parameters(visual: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA parameters inside a tower (names containing ``lora_``)."""
    return {n: p for n, p in visual.named_parameters() if "lora_" in n}
