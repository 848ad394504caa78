"""What a method's head rule may compute on the encoder being trained: the zero-shot rows of
the text tower, a linear probe, the class means of the features, or anything built from the
features themselves (``Method.init_head``, ``Method.final_head``).

It lives in the evaluation layer, beside the tracker whose feature extraction (batches,
precision, preprocessing) and probe (``eval.probe``) it uses, so that a head fitted here is
the one the tracker's ``lp`` kind would fit, and a method never imports the run layer. The
continual loop builds one per (method, seed) and hands it to the hooks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Optional

import torch

from benchmark.evaluation.heads import class_prototypes
from benchmark.evaluation.tracker import Tracker
from tasks import Split, Task

if TYPE_CHECKING:  # imports Avalanche
    from benchmark.models.classifier import ClipClassifier

HeadRows = tuple[torch.Tensor, Optional[torch.Tensor]]  # (weight [K, D], bias [K] or None: zeros)


class StageHeads:
    """Head rules on the current image tower of ``model`` (read at each call: LoRA merges
    its adapters into a new tower object after every stage)."""

    def __init__(
        self, model: ClipClassifier, tracker: Tracker, logit_scale: float, train_split: Callable[[Task], Split]
    ) -> None:
        self.model = model
        self.tracker = tracker
        self.logit_scale = logit_scale  # CLIP's exp(logit_scale): the zero-shot head's scale
        self._train_split = train_split  # the loop's rule for a stage's images (train.train_limit)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """l2-normalised embeddings [N, D] (float32) of uint8 images, in inference mode."""
        return self.tracker.features(self.model.visual, images)

    def train_split(self, task: Task) -> Split:
        """The task's training images the stage sees (at most ``train.train_limit``)."""
        return self._train_split(task)

    def zeroshot(self, task: Task) -> HeadRows:
        """The zero-shot head of the task's class prompts (original text tower; no bias)."""
        return self.tracker.sets[task.name].zeroshot.clone(), None

    def probe(self, task: Task) -> HeadRows:
        """A converged linear probe (``eval.probe``) on the current encoder's features of the
        task's train split only: a head that training starts from or keeps must not be
        fitted on the validation split a sweep selects on (``Tracker.fit_probe``)."""
        probe = self.tracker.fit_probe(self.model.visual, self.tracker.sets[task.name], head_init=True)
        return probe.weight.detach().clone(), probe.bias.detach().clone()

    def prototypes(self, task: Task) -> HeadRows:
        """Class means of the current encoder's features of the stage's training images,
        scaled as the zero-shot head (``heads.class_prototypes``); no bias."""
        split = self.train_split(task)
        feats = self.features(split.images)
        return class_prototypes(feats, split.labels.to(feats.device), task.num_classes, self.logit_scale), None

    def rule(self, name: str, task: Task) -> HeadRows:
        """The head ``train.head_init`` names: ``zeroshot`` or ``lp`` (a probe)."""
        return {"zeroshot": self.zeroshot, "lp": self.probe}[name](task)
