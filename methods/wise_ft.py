"""WiSE-FT: after each stage, interpolate the image encoder between its reference and fine-tuned weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal, Optional

import torch

from benchmark.config import Range
from benchmark.training.method import Method, register_method


@register_method("wise_ft")
class WiseFT(Method):
    """Fine-tuning, then encoder weights = (1 - alpha) * reference + alpha * fine-tuned after each stage.

    Mixed: every floating-point tensor of the image encoder's state dict, parameters and
    buffers alike (BatchNorm running means and variances of ResNet towers). Kept as
    fine-tuned: integer buffers (``num_batches_tracked``), which are counters, not weights,
    and the heads: each task's head stays the one trained on the fine-tuned features (this
    suite's choice; Wortsman et al. also mix the classifier with the zero-shot one). The mix
    runs in ``after_training_exp``: in a composition put ``wise_ft`` first (``wise_ft+ewc``),
    since plugins run in order and those that snapshot the model at the end of a stage
    (EWC, SI, MAS, LwF) should see the mixed weights.
    """

    paper = "Wortsman et al., CVPR 2022 (robust fine-tuning of zero-shot models)"
    needs_encoder_training = True

    @dataclass
    class Params:
        # weight of the fine-tuned end: 0 = the reference, 1 = plain fine-tuning
        alpha: Annotated[float, Range(low=0, high=1)] = 0.5
        # previous: the encoder at the start of the stage; pretrained: the original model
        reference: Literal["previous", "pretrained"] = "previous"

    def __init__(self, params: Optional[WiseFT.Params] = None) -> None:
        super().__init__(params)
        self.reference: Optional[dict[str, torch.Tensor]] = None

    def before_training_exp(self, strategy, **kwargs) -> None:
        if self.reference is None or self.params.reference == "previous":
            self.reference = {k: v.detach().clone() for k, v in mixable(strategy.model.visual).items()}

    def state_dict(self) -> dict:
        return {"reference": self.reference}

    def load_state_dict(self, state: dict, context) -> None:
        ref = state["reference"]
        self.reference = None if ref is None else {k: v.to(context.device) for k, v in ref.items()}

    @torch.no_grad()
    def after_training_exp(self, strategy, **kwargs) -> None:
        tuned = mixable(strategy.model.visual)  # views of the live tensors: mixed in place
        names = list(tuned)
        # theta <- theta_ft + (1 - alpha)(theta_ref - theta_ft) = (1 - alpha) theta_ref + alpha theta_ft
        torch._foreach_lerp_([tuned[k] for k in names], [self.reference[k] for k in names], 1.0 - self.params.alpha)


def mixable(encoder: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The encoder's floating-point parameters and buffers (integer counters excluded)."""
    return {k: v for k, v in encoder.state_dict().items() if v.is_floating_point()}
