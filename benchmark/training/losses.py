"""The task loss of a training step: cross-entropy over the classes the protocol says.

In a class-incremental stage the one head has a row for every class seen so far. The
suite's default (``train.loss_classes: seen``) is cross-entropy over all those rows. ZSCL's
class-incremental code (Zheng et al., ICCV 2023; Thunderbeee/ZSCL ``cil/continual_clip/
models.py``) scores a batch against the current step's class prompts only, with the targets
shifted by the step's first class, so the rows of earlier classes get no gradient from the
task loss (``current``). A sample of an earlier group in the batch (a replay buffer's) has no
row among the current ones; it is scored over all seen classes, as under ``seen``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from tasks.class_incremental import ClassGroup


def task_cross_entropy(
    logits: torch.Tensor,
    targets: torch.Tensor,
    task: Optional[object],
    loss_classes: str = "seen",
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy of the batch; ``current`` restricts a class group's own samples to the
    group's logits (columns offset..offset+k-1, targets minus offset)."""
    if loss_classes == "seen" or not isinstance(task, ClassGroup):
        return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)
    first, k = task.offset, len(task.classes)
    local = targets - first
    own = (local >= 0) & (local < k)
    group = F.cross_entropy(
        logits[:, first : first + k], local.clamp(0, k - 1), reduction="none", label_smoothing=label_smoothing
    )
    seen = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    return torch.where(own, group, seen).mean()  # both computed: no host sync to choose
