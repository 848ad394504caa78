"""What a downstream task is: labelled image splits, class names and prompt templates."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from benchmark.registry import Registry


@dataclass
class Split:
    """One split of a task, held in memory as uint8 images (the fast path on any device)."""

    images: torch.Tensor  # uint8 [N, 3, H, W]; or a tasks.cache.MappedImages left on disk
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.ndim != 4 or self.images.shape[1] != 3:
            raise ValueError(f"images must be uint8 [N, 3, H, W], got {self.images.dtype} {tuple(self.images.shape)}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, limit: Optional[int], seed: int = 0) -> Split:
        """A seeded random subset of at most ``limit`` examples (all of them if None)."""
        if limit is None or limit >= len(self):
            return self
        idx = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:limit]
        return Split(self.images[idx], self.labels[idx])


@dataclass
class Task:
    """A classification task: splits plus what zero-shot classification needs."""

    name: str
    classnames: list[str]
    templates: list[str]  # each with one "{}" where the class name goes
    train: Split
    test: Split
    description: str = ""
    source: str = ""  # where the data came from, for the manifest
    val: Optional[Split] = None  # held out of the train split (the authors' 10%), e.g. to pick LP's lr
    # The dataset's own class names where they differ from ``classnames`` (torchvision's
    # "aquarium_fish" where CLIP says "aquarium fish"); None: it has none of its own.
    raw_classnames: Optional[list[str]] = None

    @property
    def num_classes(self) -> int:
        return len(self.classnames)

    def prompts(self) -> list[list[str]]:
        """Prompts per class: [num_classes][num_templates]."""
        return [[t.format(c) for t in self.templates] for c in self.classnames]


@dataclass
class TaskContext:
    """What a task factory may use: where data lives, a seed, size limits."""

    data_root: Path = field(default_factory=lambda: Path("data"))
    seed: int = 0
    train_limit: Optional[int] = None
    test_limit: Optional[int] = None
    download: bool = False
    # Folder of the decoded-image cache (tasks/cache.py); None decodes into memory instead.
    data_cache: Optional[Path] = None
    # The run scores a validation split (eval.splits has "val"): a task with none of its own
    # returns the one it keeps apart (digits) or renders one (the procedural world); off,
    # nothing changes.
    val: bool = False
    # The model's input size (the runner sets it from the loaded model): image-file tasks
    # decode and cache at most this size, not at 224 px to be shrunk on every batch. None:
    # each task's own size (224 px for image files).
    image_size: Optional[int] = None
    # Limits draw per class, keeping each class's share of the split (where the source knows
    # its labels before decoding): a class-incremental dataset's groups then hold the split's
    # proportions (benchmark/loop/seen_classes.py). Off: one uniform draw, as always.
    stratified: bool = False


def with_prompts(task: Task, templates: list[str], classnames: str) -> Task:
    """``task`` with other zero-shot prompts: ``templates`` (empty: its own) on its names
    (``classnames`` "task") or on the dataset's own names ("raw", where it has them; ZSCL's
    class-incremental code prompts torchvision's raw CIFAR-100 names)."""
    raw = task.raw_classnames if task.raw_classnames and len(task.raw_classnames) == task.num_classes else None
    names = raw if classnames == "raw" and raw else task.classnames
    return dataclasses.replace(task, classnames=list(names), templates=list(templates or task.templates))


TaskFactory = Callable[[TaskContext], Task]
TASKS: Registry[TaskFactory] = Registry("task")
register_task = TASKS.register
