"""L2-SP: a squared l2 pull of the image encoder's weights towards a reference point.

The penalty alpha * sum ||p - p0||^2 (Li, Grandvalet, Davoine, ICML 2018) is never built
in the autograd graph: its gradient 2 alpha (p - p0) is added straight to ``p.grad`` after
the backward pass, with two fused foreach calls over the whole parameter list. It runs in
``after_backward``, so before the engine clips the gradient norm in ``optimizer_step``,
exactly as if the penalty had been in the loss.

Cost, measured through the Engine on an H200 (open_clip ViT-B-32 random init, batch 256,
bf16 autocast, fused AdamW, torch 2.11): 1.01x a fine-tuning step, against 1.47x with the
penalty in the loss through autograd (docs/protocol.md: 1.4-1.6x for the autograd routes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import torch

from benchmark.config import Range
from benchmark.training.method import Method, register_method


@register_method("l2sp")
class L2SP(Method):
    """Fine-tuning + alpha * squared l2 distance of the image-encoder weights to the reference."""

    paper = "Li, Grandvalet, Davoine, ICML 2018 (L2-SP); alpha 0.5 as in Mukhoti et al., TMLR 2024"
    needs_encoder_training = True

    @dataclass
    class Params:
        alpha: Annotated[float, Range(low=0)] = 0.5  # the LDIFS authors' value
        # previous: the encoder at the start of the stage; pretrained: the original model
        reference: Literal["previous", "pretrained"] = "previous"

    def __init__(self, params: Optional[L2SP.Params] = None) -> None:
        super().__init__(params)
        self.weights: list[torch.Tensor] = []  # the encoder's trainable parameters
        self.anchors: Optional[list[torch.Tensor]] = None  # p0, one per weight

    def before_training_exp(self, strategy, **kwargs) -> None:
        # Heads are not penalised: only the image encoder's parameters (authors' protocol).
        self.weights = [p for p in strategy.model.visual.parameters() if p.requires_grad]
        if self.anchors is None or self.params.reference == "previous":
            self.anchors = [p.detach().clone() for p in self.weights]

    def state_dict(self) -> dict:
        return {"anchors": self.anchors}

    def load_state_dict(self, state: dict, context) -> None:
        anchors = state["anchors"]
        self.anchors = None if anchors is None else [a.to(context.device) for a in anchors]

    @torch.no_grad()
    def after_backward(self, strategy, **kwargs) -> None:
        add_l2sp_gradient(self.weights, self.anchors, self.params.alpha)

    @torch.no_grad()
    def penalty(self) -> torch.Tensor:
        """alpha * sum ||p - p0||^2 now (a device scalar; for logs and tests, not per step)."""
        norms = torch._foreach_norm(torch._foreach_sub(self.weights, self.anchors))
        return self.params.alpha * torch.stack(norms).pow(2).sum()


def add_l2sp_gradient(weights: list[torch.Tensor], anchors: list[torch.Tensor], alpha: float) -> None:
    """p.grad += 2 alpha (p - p0) for every weight that has a gradient.

    The difference is taken first (not grad += 2a p - 2a p0): near the anchor the two large
    terms would cancel into rounding noise, which Adam's per-coordinate scaling amplifies.
    """
    pairs = [(p, p0) for p, p0 in zip(weights, anchors) if p.grad is not None]
    if not pairs or alpha == 0:
        return
    live, ref = zip(*pairs)
    torch._foreach_add_([p.grad for p in live], torch._foreach_sub(live, ref), alpha=2.0 * alpha)
