"""LDIFS: l2 distance between intermediate features of the fine-tuned and a reference encoder."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark.config import Range
from benchmark.models.taps import Tap, TapRecorder, image_taps
from benchmark.training.method import Method, register_method


def norm_dim(tap: Tap, axis: str) -> int:
    """The axis each tap is l2-normalised along: dim 1 (the authors', an LPIPS habit: tokens
    of a ViT [B, tokens, width], channels of a conv map [B, C, H, W]) or the feature axis
    (width of a ViT, channels of a conv map)."""
    return -1 if (axis == "features" and tap.token_major) else 1


def ldifs_distance(
    feats: list[torch.Tensor], ref_feats: list[torch.Tensor], taps: list[Tap], axis: str = "authors"
) -> torch.Tensor:
    """Mean over the batch of the mean over taps of the mean squared difference of the
    l2-normalised taps (Mukhoti et al., TMLR 2024, Eq. 2).

    For unit vectors |a - b|^2 = 2 - 2 cos(a, b), so each tap costs one cosine similarity
    along the normalised axis (one read of each tensor) instead of materialising both
    normalised tensors, their difference and its square: the penalty's share of the step
    drops accordingly. Equal to the direct formula up to float rounding (tested).
    """
    per_tap = []
    for f, r, tap in zip(feats, ref_feats, taps):
        dim = norm_dim(tap, axis)
        cos = F.cosine_similarity(f.float(), r.float(), dim=dim, eps=1e-10)  # [B, ...] without `dim`
        per_tap.append((2 - 2 * cos).flatten(1).mean(1) / f.shape[dim])  # [B]: mean over all entries
    return torch.stack(per_tap).mean(0).mean()


def frozen_like_training(encoder: nn.Module) -> nn.Module:
    """A frozen copy that normalises like the encoder being trained.

    Both towers must see the batch the same way, or the distance is non-zero before the
    first step: BatchNorm layers (ModifiedResNet) stay in training mode, using the batch's
    statistics, with momentum 0 so their running statistics never move.
    """
    ref = copy.deepcopy(encoder).requires_grad_(False).train()
    for module in ref.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0
    return ref


@register_method("ldifs")
class LDIFS(Method):
    """Fine-tuning + alpha * feature-space distance to a frozen reference encoder."""

    paper = "Mukhoti, Gal, Torr, Dokania, TMLR 2024 (arXiv 2308.13320)"
    needs_encoder_training = True

    @dataclass
    class Params:
        alpha: Annotated[float, Range(low=0)] = 10.0
        # previous: the encoder after stage t-1 (the authors' continual protocol); pretrained: the original
        reference: Literal["previous", "pretrained"] = "previous"
        # authors: l2-normalise each tap along dim 1 (tokens of a ViT), as their code does
        norm_axis: Literal["authors", "features"] = "authors"

    def __init__(self, params: Optional[LDIFS.Params] = None) -> None:
        super().__init__(params)
        self.reference: Optional[nn.Module] = None
        self._live: Optional[TapRecorder] = None
        self._ref: Optional[TapRecorder] = None
        self.last_distance = torch.tensor(0.0)

    def before_training_exp(self, strategy, **kwargs) -> None:
        if self.reference is None or self.params.reference == "previous":
            self.reference = frozen_like_training(strategy.model.visual)
        # Taps of the trained encoder come from the forward pass that gives the logits.
        self._live = TapRecorder(image_taps(strategy.model.visual))
        self._ref = TapRecorder(image_taps(self.reference))

    def before_backward(self, strategy, **kwargs) -> None:
        feats = self._live.take()
        with torch.no_grad(), strategy.autocast():
            self.reference(strategy.mb_x)  # fills self._ref
        self.last_distance = ldifs_distance(feats, self._ref.take(), self._live.taps, self.params.norm_axis)
        strategy.loss += self.params.alpha * self.last_distance

    def state_dict(self) -> dict:
        """The frozen reference (between stages only with reference=pretrained)."""
        return {"reference": None if self.reference is None else self.reference.state_dict()}

    def load_state_dict(self, state: dict, context) -> None:
        if state["reference"] is not None:  # the same architecture as the tower: copy it, then load
            self.reference = frozen_like_training(context.model.visual)
            self.reference.load_state_dict(state["reference"])

    def after_training_exp(self, strategy, **kwargs) -> None:
        for rec in (self._live, self._ref):
            rec.remove()
        if self.params.reference == "previous":
            self.reference = None  # the next stage copies the then-current encoder
