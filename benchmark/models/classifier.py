"""The model every method fine-tunes: a CLIP image tower with one linear head per task."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from avalanche.models import MultiTaskModule

PAD_LOGIT = -1e4  # logits of classes a sample's task lacks (mixed-task batches, replay)


class ClipClassifier(MultiTaskModule):
    """CLIP's image tower with one linear head per task on the l2-normalised embedding.

    As in Mukhoti et al. (2024) and WiSE-FT: logits = W f/|f| + b, W initialised from the
    zero-shot text head (scaled by exp(logit_scale)) or a linear probe.
    """

    visual: nn.Module  # declared: nn.Module's attribute lookup would type it Tensor | Module
    heads: nn.ModuleDict

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.heads = nn.ModuleDict()

    def add_head(self, task_label: int, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> None:
        head = nn.Linear(weight.shape[1], weight.shape[0]).to(weight.device)
        with torch.no_grad():
            head.weight.copy_(weight)
            head.bias.copy_(bias if bias is not None else torch.zeros(weight.shape[0]))
        self.heads[str(task_label)] = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.visual(x), dim=-1)  # [B, D]

    def forward_single_task(self, x: torch.Tensor, task_label: int) -> torch.Tensor:
        return self.heads[str(task_label)](self.features(x))

    def forward_all_tasks(self, x: torch.Tensor) -> dict[int, torch.Tensor]:
        feats = self.features(x)  # one pass of the tower for every head (LwF asks for all)
        return {int(t): head(feats) for t, head in self.heads.items()}

    def forward(self, x: torch.Tensor, task_labels) -> torch.Tensor:
        if task_labels is None:
            return self.forward_all_tasks(x)  # type: ignore[return-value]
        if isinstance(task_labels, int):
            return self.forward_single_task(x, task_labels)
        feats = self.features(x)
        width = max(h.out_features for h in self.heads.values())  # type: ignore[type-var]
        out = feats.new_full((x.shape[0], width), PAD_LOGIT)  # type: ignore[arg-type]
        for t in torch.unique(task_labels).tolist():  # mixed-task batches only (replay)
            mask = task_labels == t
            logits = self.heads[str(t)](feats[mask])
            out[mask, : logits.shape[1]] = logits.to(out.dtype)
        return out
