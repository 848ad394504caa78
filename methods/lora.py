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
``attn`` (peft's MultiheadAttention LoRA, on the packed q/k/v and output projections;
``out_proj`` alone would be silently ignored, since MultiheadAttention never calls it),
``c_fc`` and ``c_proj``; for ModifiedResNet, the bottleneck convolutions
(``layerK.J.conv1/2/3``; not the attention pool's projections, which it reads as raw
weights). Otherwise a comma-separated list of module-name suffixes, or ``re:<regex>``
matched against the full module name inside the tower. peft >= 0.15 is needed for the
MultiheadAttention adapters.

Everything else in the tower is frozen, BatchNorm scales and shifts included (running
statistics still update in training mode), as in standard LoRA.

``import peft`` loads ``transformers`` (seconds), so it happens inside the method, when
the first stage starts, never at the suite's start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional, Union

import torch.nn as nn

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.training.method import Method, register_method

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


def inject(visual: nn.Module, p: LoRA.Params) -> Any:
    """Add fresh adapters to ``visual`` in place; return peft's tuner (for the merge)."""
    import peft

    cfg = peft.LoraConfig(
        r=p.rank,
        lora_alpha=p.alpha,
        lora_dropout=p.dropout,
        target_modules=parse_targets(p.target_modules, visual),
        bias="none",
    )
    try:
        return peft.LoraModel(visual, cfg, "default")
    except ValueError as e:  # peft: "Target modules ... not found in the base model"
        raise UserError(f"hparams.lora.target_modules={p.target_modules!r}: {str(e).splitlines()[0]}") from None


@register_method("lora")
class LoRA(Method):
    """Low-rank adapters (peft) on the image tower, trained with the heads and merged after each stage."""

    paper = "Hu et al., ICLR 2022 (LoRA), through Hugging Face peft"
    needs_encoder_training = True

    @dataclass
    class Params:
        rank: Annotated[int, Range(low=1)] = 8
        alpha: float = 16.0  # the product is scaled by alpha / rank
        dropout: float = 0.0  # on the adapter's input (peft's lora_dropout)
        target_modules: str = "auto"  # auto | comma-separated module names | re:<regex>

    def validate(self) -> None:
        """Open bounds the field types cannot say (closed ones are declared on ``Params``)."""
        p = self.params
        if p.alpha <= 0:
            raise UserError(f"hparams.lora.alpha={p.alpha!r} must be > 0")
        if not 0 <= p.dropout < 1:
            raise UserError(f"hparams.lora.dropout={p.dropout!r} must be in [0, 1)")

    def __init__(self, params: Optional[LoRA.Params] = None) -> None:
        super().__init__(params)
        self.tuner: Any = None  # peft's LoraModel during a stage; None between stages

    def __getstate__(self) -> dict:
        """Checkpoints are written between stages, when the adapters are already merged."""
        return {**self.__dict__, "tuner": None}

    def before_training(self, strategy, **kwargs) -> None:
        visual = strategy.model.visual
        self.tuner = inject(visual, self.params)
        strategy.model.visual = self.tuner.model  # the same module, now with adapters

    def after_training_exp(self, strategy, **kwargs) -> None:
        if self.tuner is None:
            return
        strategy.model.visual = self.tuner.merge_and_unload()
        strategy.model.visual.requires_grad_(True)  # peft leaves every merged weight frozen
        self.tuner = None


def adapter_parameters(visual: nn.Module) -> dict[str, nn.Parameter]:
    """The LoRA parameters inside a tower (names containing ``lora_``)."""
    return {n: p for n, p in visual.named_parameters() if "lora_" in n}
