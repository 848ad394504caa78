"""LDIFS: l2 distance between intermediate features of the fine-tuned and a reference encoder."""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import torch
import torch.nn as nn

from benchmark.config import Range
from benchmark.errors import UserError
from benchmark.models.reference import ReferenceRunner, TapCache, log, stochastic_or_batch_dependent
from benchmark.models.taps import TapRecorder, image_taps, ldifs_distance, norm_dim  # noqa: F401  re-exported
from benchmark.training.method import EngineView, Method, register_method


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
        # Speed paths (docs/performance.md); each gives the plain path's numbers up to rounding.
        reference_stream: bool = False  # CUDA: the reference's forward on a second stream, beside the trained one
        cuda_graph: bool = False  # CUDA: replay the reference's forward from a CUDA graph (elsewhere: warned, eager)
        # the reference's taps computed once per image and stage, reused in later epochs
        reuse_reference_taps: Literal["auto", "on", "off"] = "off"
        # device memory the reused taps may take; 0: half the free memory
        reuse_budget_gb: Annotated[float, Range(low=0)] = 0.0

    def __init__(self, params: Optional[LDIFS.Params] = None) -> None:
        super().__init__(params)
        self.reference: Optional[nn.Module] = None
        self._live: Optional[TapRecorder] = None
        self._ref: Optional[TapRecorder] = None
        self._runner: Optional[ReferenceRunner] = None
        self._cache: Optional[TapCache] = None
        self._cached: Optional[list[torch.Tensor]] = None  # this batch's reused taps
        self._launched = False
        self.reuse_tier: Optional[str] = None  # the last stage's TapCache tier, when reuse was on
        self.last_distance = torch.tensor(0.0)

    def before_training_exp(self, strategy: EngineView, **kwargs) -> None:
        if self.reference is None or self.params.reference == "previous":
            self.reference = frozen_like_training(strategy.model.visual)
        # Taps of the trained encoder come from the forward pass that gives the logits.
        self._live = TapRecorder(image_taps(strategy.model.visual))
        self._ref = TapRecorder(image_taps(self.reference))
        p, device = self.params, strategy.device
        if p.cuda_graph and device.type != "cuda":
            warnings.warn(f"hparams.ldifs.cuda_graph needs CUDA; the reference runs eagerly on {device}", stacklevel=1)
        self._runner = ReferenceRunner(
            self.reference, self._ref, device, strategy.autocast, p.reference_stream, p.cuda_graph
        )
        self._cache = self._make_cache(strategy)

    def _make_cache(self, strategy: EngineView) -> Optional[TapCache]:
        """A TapCache when reuse is asked for and exact (no augmentation, no batch-dependent
        or random layers); ``on`` where it is not exact is refused, ``auto`` recomputes."""
        mode = self.params.reuse_reference_taps
        if mode == "off":
            return None
        augment = getattr(strategy.cfg, "augment", "none")
        reasons = [f"train.augment={augment}"] if augment not in (None, False, "", "none", "off") else []
        reasons += stochastic_or_batch_dependent(self.reference)[:3]
        if reasons and mode == "on":
            raise UserError(
                f"hparams.ldifs.reuse_reference_taps=on is not exact here ({', '.join(reasons)}); use auto or off"
            )
        tensors = getattr(strategy.dataloader, "tensors", None)
        if reasons or tensors is None or strategy.train_epochs < 2:
            why = "; ".join(reasons) or ("one epoch" if tensors is not None else "no dataset indices")
            log.info("LDIFS reference taps: recompute tier (%s)", why)
            self.reuse_tier = "recompute"
            return None
        budget = int(self.params.reuse_budget_gb * 2**30)
        return TapCache(len(tensors[0]), strategy.device, budget)

    def _indices(self, strategy: EngineView) -> tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
        """Dataset positions of the batch (DeviceBatchLoader's; other loaders, e.g. replay's, have none)."""
        loader = strategy.dataloader
        return getattr(loader, "last_indices", None), getattr(loader, "last_indices_device", None)

    def before_forward(self, strategy: EngineView, **kwargs) -> None:
        self._cached, self._launched = None, False
        idx, idx_dev = self._indices(strategy)
        if self._cache is not None and idx is not None:
            self._cached = self._cache.lookup(idx, idx_dev)
        if self._cached is None and self.params.reference_stream:
            self._runner.launch(strategy.mb_x)  # overlaps the trained tower's forward on CUDA
            self._launched = True

    def before_backward(self, strategy: EngineView, **kwargs) -> None:
        feats = self._live.take()
        refs = self._cached
        if refs is None:
            if not self._launched:
                self._runner.launch(strategy.mb_x)
            refs = self._runner.result()
            idx, idx_dev = self._indices(strategy)
            if self._cache is not None and idx is not None:
                self._cache.fill(idx, idx_dev, refs)
        self._cached, self._launched = None, False
        self.last_distance = ldifs_distance(feats, refs, self._live.taps, self.params.norm_axis)
        strategy.loss += self.params.alpha * self.last_distance

    def state_dict(self) -> dict:
        """The frozen reference (between stages only with reference=pretrained)."""
        return {"reference": None if self.reference is None else self.reference.state_dict()}

    def load_state_dict(self, state: dict, context) -> None:
        if state["reference"] is not None:  # the same architecture as the tower: copy it, then load
            self.reference = frozen_like_training(context.model.visual)
            self.reference.load_state_dict(state["reference"])

    def after_training_exp(self, strategy: EngineView, **kwargs) -> None:
        for rec in (self._live, self._ref):
            rec.remove()
        if self._cache is not None:  # where the stage's reused taps lived (perf reports it)
            self.reuse_tier = self._cache.tier or "recompute"
            self._cache.release()
        self._runner = self._cache = None
        if self.params.reference == "previous":
            self.reference = None  # the next stage copies the then-current encoder
