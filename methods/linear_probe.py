"""Linear probing: the image encoder frozen, only the per-task heads train."""

from typing import Optional

from benchmark.training.method import HeadRows, HeadTools, Method, register_method
from tasks import Task


@register_method("linear_probe")
class LinearProbe(Method):
    """A converged linear probe per task on the frozen encoder: the no-forgetting floor of adaptation.

    With the encoder untouched, every other task keeps its pre-trained linear-probe and
    zero-shot accuracy, so this bounds what any method can retain while still adapting.
    The loop takes the encoder's parameters out of the optimiser (``trains_encoder``);
    this plugin also keeps the encoder in eval mode during training, since a frozen
    ResNet tower in train mode would still drift through its BatchNorm running statistics.
    Each task's head is the tracker's probe (``eval.probe``: L-BFGS, or the authors' AdamW
    with its lr chosen on validation) fitted on the frozen features after the stage
    (``final_head``), so it equals the tracker's ``lp`` accuracy on that task; the stage's
    optimiser steps (lr 1e-5 in the paper preset) would leave a zero-shot-initialised head
    almost where it started. Composition with methods that only act on the encoder (ldifs, l2sp, ewc, ...) is
    refused by ``build_method``: they would change nothing.
    """

    paper = "Radford et al., ICML 2021 (linear probes of CLIP); Kumar et al., ICLR 2022"

    @classmethod
    def refuse(cls, scenario: str) -> Optional[str]:
        if scenario == "class_incremental":
            return (
                "its head is a probe fitted on one task's own classes, and a probe over all "
                "seen classes would need the earlier groups' images; use prototype (class means) instead"
            )
        return None

    def trains_encoder(self) -> bool:
        return False

    def final_head(self, heads: HeadTools, task: Task) -> HeadRows:
        """The converged probe on the frozen features replaces the trained head."""
        return heads.probe(task)

    def before_training_exp(self, strategy, **kwargs) -> None:
        strategy.model.visual.eval()  # Avalanche's train() put the whole model in train mode
