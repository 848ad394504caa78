"""The accuracy-matrix tracker: every task, after every stage, three ways (head, lp, zs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from benchmark.config import EvalConfig
from benchmark.evaluation.authors_probe import fit_authors_probe
from benchmark.evaluation.heads import accuracy, expected_calibration_error, fit_linear_probe
from benchmark.models.preprocess import BatchPreprocess, bf16_autocast
from tasks import Task
from tasks.loading import train_val_indices


@dataclass
class EvalSet:
    """A task's evaluation data, subsampled once per run so every stage sees the same images."""

    task: Task
    probe_images: torch.Tensor  # uint8 [N, 3, H, W], train split, for the linear probe
    probe_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    zeroshot: torch.Tensor  # [K, D] zero-shot head from the original text tower
    # The task's validation split (the authors' 10%), for eval.probe=authors' lr choice;
    # None: the authors' 90/10 draw is made inside the probe images instead.
    val_images: Optional[torch.Tensor] = None
    val_labels: Optional[torch.Tensor] = None


class Tracker:
    """Evaluates an image tower on every task; returns rows of the long accuracy table.

    Features are extracted once per (stage, task) in inference mode and serve all three
    kinds: ``head`` (the method's head for the task, else the zero-shot head), ``lp`` (a
    linear probe fitted on the frozen train features) and ``zs`` (zero-shot prompts).
    """

    def __init__(
        self,
        eval_sets: dict[str, EvalSet],
        cfg: EvalConfig,
        preprocess: BatchPreprocess,
        device: torch.device,
        progress: bool = True,
    ) -> None:
        self.sets = eval_sets
        self.cfg = cfg
        self.preprocess = preprocess.to(device)
        self.device = device
        self.progress = progress
        self.probe_lrs: dict[str, float] = {}  # task -> lr the authors' probe chose last

    @torch.inference_mode()
    def features(self, visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """l2-normalised embeddings [N, D] in float32."""
        was_training = visual.training
        visual.eval()
        out = []
        with bf16_autocast(self.device):
            for chunk in images.split(self.cfg.batch_size):
                x = self.preprocess(chunk.to(self.device, non_blocking=True))
                out.append(F.normalize(visual(x).float(), dim=-1))
        visual.train(was_training)
        return torch.cat(out)

    def evaluate(self, visual: nn.Module, heads: dict[str, nn.Module], stage: int, desc: str = "") -> list[dict]:
        """Rows {eval_task, kind, accuracy, ece} for every task; ``heads`` maps trained task -> head."""
        rows = []
        names = list(self.sets)
        for name in tqdm(names, desc=f"  evaluating {desc}stage {stage}", leave=False, disable=not self.progress):
            rows += self._evaluate_task(visual, self.sets[name], heads.get(name))
        return rows

    def _evaluate_task(self, visual: nn.Module, es: EvalSet, head: Optional[nn.Module]) -> list[dict]:
        test = self.features(visual, es.test_images)
        y = es.test_labels.to(self.device)
        rows = []
        for kind in self.cfg.kinds:
            with torch.no_grad():
                if kind == "zs" or (kind == "head" and head is None):
                    logits = test @ es.zeroshot.T
                elif kind == "head":
                    logits = head(test)
                else:
                    logits = self.fit_probe(visual, es)(test)
            rows.append(
                {
                    "eval_task": es.task.name,
                    "kind": kind,
                    "accuracy": round(accuracy(logits, y), 4),
                    "ece": round(expected_calibration_error(logits, y), 4),  # Guo et al. 2017, 15 bins
                }
            )
        return rows

    def fit_probe(self, visual: nn.Module, es: EvalSet) -> nn.Linear:
        if self.cfg.probe == "authors":
            return self._fit_authors_probe(visual, es)
        feats = self.features(visual, es.probe_images)
        return fit_linear_probe(
            feats, es.probe_labels.to(self.device), es.task.num_classes, self.cfg.lp_weight_decay, self.cfg.lp_max_iter
        )

    def _fit_authors_probe(self, visual: nn.Module, es: EvalSet) -> nn.Linear:
        """The authors' probe: lr chosen on the validation split, refit on train + val."""
        feats, labels = self.features(visual, es.probe_images), es.probe_labels.to(self.device)
        if es.val_images is not None:
            train = (feats, labels)
            val = (self.features(visual, es.val_images), es.val_labels.to(self.device))
        else:  # the authors' 90/10 draw (random_split seeded 0) inside the probe images
            tr, va = (i.to(self.device) for i in train_val_indices(len(labels)))
            train, val = (feats[tr], labels[tr]), (feats[va], labels[va])
        head, lr = fit_authors_probe(train, val, es.task.num_classes, self.cfg.probe_lrs, self.cfg.probe_steps)
        self.probe_lrs[es.task.name] = lr
        return head
