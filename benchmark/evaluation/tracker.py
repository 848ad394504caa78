"""The accuracy-matrix tracker: every task, after every stage, three ways (head, lp, zs)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmark import distributed
from benchmark.config import EvalConfig
from benchmark.evaluation.authors_probe import fit_authors_probe
from benchmark.evaluation.heads import accuracy, expected_calibration_error, fit_linear_probe
from benchmark.logs import progress
from benchmark.models.preprocess import BatchPreprocess, run_autocast
from benchmark.rows import Score
from tasks import Sequence as TaskSequence
from tasks import Task
from tasks.cache import batches
from tasks.loading import train_val_indices


@dataclass
class EvalSet:
    """A task's evaluation data, subsampled once per run so every stage sees the same images."""

    task: Task
    probe_images: torch.Tensor  # uint8 [N, 3, H, W] (or MappedImages), train split, for the linear probe
    probe_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    zeroshot: torch.Tensor  # [K, D] zero-shot head from the original text tower
    # The task's validation split: scored like test when eval.splits has "val", and where
    # eval.probe=authors picks its lr (None: the authors' 90/10 draw inside the probe images).
    val_images: Optional[torch.Tensor] = None
    val_labels: Optional[torch.Tensor] = None

    def splits(self, names: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The requested splits this task has, as name -> (images, labels); test first."""
        have = {"test": (self.test_images, self.test_labels)}
        if self.val_images is not None:
            have["val"] = (self.val_images, self.val_labels)
        return {name: have[name] for name in names if name in have}


def probed_tasks(setting: str, sequence: TaskSequence) -> Optional[frozenset[str]]:
    """The tasks ``eval.lp_tasks`` gives a linear probe after each stage; None: every task.
    "auto" probes only the eval-only tasks of a class-incremental run: its headline numbers
    (Avg, Last, forgetting from the head; dLP / dZS on eval-only tasks) read no probe of a
    class group, and the groups' probes were most of a stage's evaluation."""
    if setting == "all" or (setting == "auto" and not sequence.class_incremental):
        return None
    return frozenset(sequence.eval_only)


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
        amp: str = "auto",
        probed: Optional[Collection[str]] = None,
    ) -> None:
        self.sets = eval_sets
        self.probed = probed  # tasks with `lp` rows (``probed_tasks``); None: every task
        self.amp = amp  # the run's train.amp: features are extracted in the run's precision
        self.cfg = cfg
        self.preprocess = preprocess.to(device)
        self.device = device
        self.progress = progress
        self.probe_lrs: dict[str, float] = {}  # task -> lr the authors' probe chose last

    def features(self, visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
        """l2-normalised embeddings [N, D] in float32. Under several processes each computes
        a contiguous share of the images and all gather them (benchmark/distributed.py), so
        every process holds the same features and scores, fits probes and sets heads alike."""
        n, world = len(images), distributed.world_size()
        if world == 1 or n < world:
            return self._features(visual, images)
        lo, hi = distributed.shard(n)
        return distributed.gather_rows(self._features(visual, images[lo:hi]), n)

    @torch.inference_mode()
    def _features(self, visual: nn.Module, images: torch.Tensor) -> torch.Tensor:
        was_training = visual.training
        visual.eval()
        out = []
        with run_autocast(self.amp, self.device):
            # images mapped from the decoded-image cache are read from disk one batch at a time
            for chunk in batches(images, self.cfg.batch_size, pin=self.device.type == "cuda"):
                x = self.preprocess(chunk.to(self.device, non_blocking=True))
                out.append(F.normalize(visual(x).float(), dim=-1))
        visual.train(was_training)
        return torch.cat(out)

    def evaluate(
        self,
        visual: nn.Module,
        heads: dict[str, nn.Module],
        stage: int,
        desc: str = "",
        zs_heads: Optional[dict[str, nn.Module]] = None,
    ) -> list[Score]:
        """Rows {eval_task, kind, accuracy, ece, n} for every task; ``heads`` maps trained task ->
        head; ``zs_heads`` replaces a task's own zero-shot head (class-incremental groups are
        scored zero-shot over every seen class)."""
        rows = []
        names = list(self.sets)
        bar = progress(len(names), f"  evaluating {desc}stage {stage}", self.progress, "task", names, leave=False)
        for name in bar:
            rows += self._evaluate_task(visual, self.sets[name], heads.get(name), (zs_heads or {}).get(name))
        return rows

    def _evaluate_task(
        self, visual: nn.Module, es: EvalSet, head: Optional[nn.Module], zs_head: Optional[nn.Module] = None
    ) -> list[Score]:
        """Rows for every kind on every split (test, then val when asked); the probe is fitted once."""
        probe: Optional[nn.Module] = None
        rows: list[Score] = []
        kinds = self.cfg.kinds
        if "lp" in kinds and self.probed is not None and es.task.name not in self.probed:
            kinds = [kind for kind in kinds if kind != "lp"]
            self._skip_probe(es)
        for split, (images, labels) in es.splits(self.cfg.splits).items():
            feats = self.features(visual, images)
            y = labels.to(self.device)
            for kind in kinds:
                with torch.no_grad():
                    if kind == "zs" or (kind == "head" and head is None):
                        logits = zs_head(feats) if zs_head is not None else feats @ es.zeroshot.T
                    elif kind == "head":
                        logits = head(feats)
                    else:
                        probe = probe or self.fit_probe(visual, es)  # fitted once, after the test features as before
                        logits = probe(feats)
                rows.append(
                    Score(
                        eval_task=es.task.name,
                        kind=kind,
                        accuracy=round(accuracy(logits, y), 4),
                        ece=round(expected_calibration_error(logits, y), 4),  # Guo et al. 2017, 15 bins
                        split=split,
                        n=len(y),  # images scored: weights when rows are pooled (class-incremental)
                    )
                )
        return rows

    def _skip_probe(self, es: EvalSet) -> None:
        """Draw from the global RNG what the probe's initialisation would have (``nn.Linear``'s,
        in ``fit_linear_probe``), so that the randomness of later stages (a replay buffer's
        draws) and every other number is the same whichever tasks are probed."""
        if self.cfg.probe == "fast":  # the authors' probe draws from its own generator
            nn.Linear(es.zeroshot.shape[1], es.task.num_classes)

    def fit_probe(self, visual: nn.Module, es: EvalSet, head_init: bool = False) -> nn.Linear:
        """The probe ``eval.probe`` names, on the task's train split.

        ``head_init``: a head that training starts from or keeps (LP-init, the linear_probe
        method's head). The authors' probe then only picks its lr on the validation split and
        is not refitted on it (their LP-init head, ``heads.py`` on the 90% split): a sweep
        that selects on val must not select a head fitted on val. The ``lp`` evaluation kind
        keeps their refit on train + val."""
        if self.cfg.probe == "authors":
            return self._fit_authors_probe(visual, es, refit=not head_init)
        feats = self.features(visual, es.probe_images)
        return fit_linear_probe(
            feats, es.probe_labels.to(self.device), es.task.num_classes, self.cfg.lp_weight_decay, self.cfg.lp_max_iter
        )

    def _fit_authors_probe(self, visual: nn.Module, es: EvalSet, refit: bool = True) -> nn.Linear:
        """The authors' probe: lr chosen on the validation split, refit on train + val (``refit``)."""
        feats, labels = self.features(visual, es.probe_images), es.probe_labels.to(self.device)
        if es.val_images is not None:
            train = (feats, labels)
            val = (self.features(visual, es.val_images), es.val_labels.to(self.device))
        else:  # the authors' 90/10 draw (random_split seeded 0) inside the probe images
            tr, va = (i.to(self.device) for i in train_val_indices(len(labels)))
            train, val = (feats[tr], labels[tr]), (feats[va], labels[va])
        head, lr = fit_authors_probe(
            train, val, es.task.num_classes, self.cfg.probe_lrs, self.cfg.probe_steps, refit=refit
        )
        self.probe_lrs[es.task.name] = lr
        return head
