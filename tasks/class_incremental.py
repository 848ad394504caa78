"""Class-incremental splits: one dataset's classes arrive in groups, one group per stage.

A sequence file with ``scenario: class_incremental`` names a dataset (a registered or
declared task), how its classes are grouped (``steps``, optionally ``initial`` classes in the
first group, or explicit ``groups``) and the order the classes arrive in (``order``: a list
of class indices, ``{seed: N}`` for a seeded permutation, or nothing for the dataset's own
order). Each group becomes a task of its own (``ClassGroup``) holding the images of its
classes, labelled 0..k-1 in the group's order; ``offset`` places those labels in the one
head over every class seen so far (label + offset = the class's position in the order).
This is the protocol of the class-incremental CLIP literature (Zheng et al., ICCV 2023,
ZSCL's ``cil/``; Rebuffi et al., CVPR 2017, iCaRL, for the class orders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch

from benchmark.errors import UserError
from tasks.base import Split, Task

SCENARIOS = ("task_incremental", "class_incremental")
# Bounds on every count a file gives, checked before anything is built from it: a stage per
# group (ImageNet-1k's classes one by one is the largest split the field runs), class
# indices, and a seed torch's generator takes as the run's seeds are (benchmark.config).
MAX_GROUPS = 1000
MAX_CLASS_INDEX = 2**31 - 1
MAX_SEED = 2**32 - 1
KEYS = ("name", "description", "scenario", "dataset", "steps", "initial", "groups", "order", "epochs", "eval_only")


@dataclass
class ClassIncremental:
    """How one dataset's classes are cut into stages (what the sequence file says)."""

    dataset: str
    steps: int
    initial: Optional[int] = None  # classes of the first group (the rest split evenly)
    groups: Optional[list[list[int]]] = None  # explicit groups of class indices, in stage order
    order: Optional[list[int]] = None  # the arrival order of class indices
    order_seed: Optional[int] = None  # a seeded permutation when no order is listed
    source: str = ""

    def group_names(self) -> list[str]:
        width = len(str(self.steps))
        return [f"{self.dataset}-g{k:0{width}d}" for k in range(1, self.steps + 1)]

    def class_order(self, num_classes: int) -> list[int]:
        """Class indices in arrival order (a permutation of 0..num_classes-1)."""
        if self.groups is not None:
            order = [c for g in self.groups for c in g]
        elif self.order is not None:
            order = list(self.order)
        elif self.order_seed is not None:
            order = torch.randperm(num_classes, generator=torch.Generator().manual_seed(self.order_seed)).tolist()
        else:
            order = list(range(num_classes))
        if sorted(order) != list(range(num_classes)) and self.groups is None:
            raise UserError(
                f"sequence file {self.source!r}: order must list each of {self.dataset!r}'s {num_classes} "
                f"class indices 0..{num_classes - 1} once, got {len(order)} entries"
            )
        bad = [c for c in order if not 0 <= c < num_classes]
        if bad or len(set(order)) != len(order):
            what = f"class index {bad[0]}" if bad else "a class listed twice"
            raise UserError(
                f"sequence file {self.source!r}: groups hold {what}; {self.dataset!r} has classes 0..{num_classes - 1}"
            )
        return order

    def class_groups(self, num_classes: int) -> list[list[int]]:
        """The class indices of every stage, in order."""
        order = self.class_order(num_classes)
        if self.groups is not None:
            return [list(g) for g in self.groups]
        first = self.initial
        rest_steps = self.steps - 1 if first is not None else self.steps
        rest = num_classes - (first or 0)
        even = (rest_steps == 0 and rest == 0) or (rest_steps > 0 and rest > 0 and rest % rest_steps == 0)
        if not even:
            raise UserError(
                f"sequence file {self.source!r}: {self.dataset!r}'s {num_classes} classes "
                f"{'less ' + str(first) + ' initial ones ' if first else ''}do not split evenly into "
                f"{rest_steps} steps; change steps/initial or list the groups"
            )
        size = rest // rest_steps if rest_steps else 0
        sizes = ([first] if first else []) + [size] * rest_steps
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        return [order[s : s + n] for s, n in zip(starts, sizes)]


@dataclass
class ClassGroup(Task):
    """One stage's classes of a class-incremental split, as a task of its own."""

    offset: int = 0  # position of the group's first class in the head over all seen classes
    classes: list[int] = field(default_factory=list)  # the dataset's class indices, in group order
    # split -> how many times a per-group limit the group may use: steps x the group's share
    # of the loaded split (benchmark/loop/seen_classes.py, group_limit); empty: the limit
    limit_scale: dict[str, float] = field(default_factory=dict)


def group_tasks(task: Task, spec: ClassIncremental) -> dict[str, ClassGroup]:
    """The dataset cut into its groups: name -> ClassGroup (train, test and val splits)."""
    groups = spec.class_groups(task.num_classes)
    tasks, offset = {}, 0
    for name, classes in zip(spec.group_names(), groups):
        tasks[name] = ClassGroup(
            name,
            [task.classnames[c] for c in classes],
            task.templates,
            _restrict(task.train, classes),
            _restrict(task.test, classes),
            f"{task.name}, classes {classes[:5]}{'...' if len(classes) > 5 else ''} (class-incremental)",
            task.source,
            _restrict(task.val, classes) if task.val is not None else None,
            offset=offset,
            classes=list(classes),
        )
        offset += len(classes)
    return tasks


def _restrict(split: Split, classes: list[int]) -> Split:
    """The examples of ``classes``, relabelled 0..k-1 in the order the classes are listed."""
    size = max([*classes, int(split.labels.max()) if len(split) else 0]) + 1
    local = torch.full((size,), -1, dtype=torch.long)
    local[torch.tensor(classes, dtype=torch.long)] = torch.arange(len(classes))
    labels = local[split.labels]
    keep = torch.nonzero(labels >= 0).flatten()
    return Split(split.images[keep], labels[keep])


def parse_class_incremental(data: dict[str, Any], source: str) -> tuple[ClassIncremental, Optional[int]]:
    """The class-incremental part of a sequence file, and its per-stage epochs."""
    unknown = sorted(set(data) - set(KEYS) - {"tasks"})
    if unknown:
        raise UserError(
            f"sequence file {source!r}: unknown key {unknown[0]!r} for scenario class_incremental; "
            f"valid keys: {', '.join(KEYS)}, tasks"
        )
    if "dataset" not in data:
        raise UserError(f"sequence file {source!r}: scenario class_incremental needs 'dataset: TASK'")
    groups = _groups(data.get("groups"), source)
    steps = _positive(data.get("steps"), "steps", source, MAX_GROUPS) if "steps" in data else None
    if groups is None and steps is None:
        raise UserError(f"sequence file {source!r}: say 'steps: N' or list 'groups' of class indices")
    if groups is not None and (steps not in (None, len(groups)) or "order" in data or "initial" in data):
        raise UserError(f"sequence file {source!r}: explicit 'groups' fix steps, order and initial; drop the others")
    initial = (
        _positive(data["initial"], "initial", source, MAX_CLASS_INDEX) if data.get("initial") is not None else None
    )
    order, order_seed = _order(data.get("order"), source)
    epochs = _positive(data["epochs"], "epochs", source) if data.get("epochs") is not None else None
    spec = ClassIncremental(
        str(data["dataset"]), len(groups) if groups else steps, initial, groups, order, order_seed, source
    )
    return spec, epochs


def _positive(value: Any, key: str, source: str, high: int = MAX_CLASS_INDEX) -> int:
    if not _integer(value) or value < 1:
        raise UserError(f"sequence file {source!r}: {key}={value!r}"[:200] + " must be an integer >= 1")
    if value > high:  # checked before anything is built from it (a name per stage, say)
        raise UserError(f"sequence file {source!r}: {key}={value} is too large; at most {high}")
    return value


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # YAML's true is not 1


def _class_indices(values: list, source: str, what: str) -> None:
    """Class indices are integers in [0, 2**31): a bigger one cannot be a class of any dataset."""
    bad = next((c for c in values if not _integer(c) or not 0 <= c <= MAX_CLASS_INDEX), None)
    if bad is not None:
        raise UserError(f"sequence file {source!r}: {what} holds {bad!r}"[:200] + "; class indices are integers >= 0")


def _groups(raw: Any, source: str) -> Optional[list[list[int]]]:
    if raw is None:
        return None
    ok = isinstance(raw, list) and raw and all(isinstance(g, list) and g for g in raw)
    if not ok or not all(_integer(c) for g in raw for c in g):
        raise UserError(f"sequence file {source!r}: groups must be a list of non-empty lists of class indices")
    if len(raw) > MAX_GROUPS:
        raise UserError(f"sequence file {source!r}: {len(raw)} groups; at most {MAX_GROUPS}")
    _class_indices([c for g in raw for c in g], source, "groups")
    return [list(g) for g in raw]


def _order(raw: Any, source: str) -> tuple[Optional[list[int]], Optional[int]]:
    if raw is None:
        return None, None
    if isinstance(raw, dict) and set(raw) == {"seed"} and _integer(raw["seed"]):
        if not 0 <= raw["seed"] <= MAX_SEED:
            raise UserError(
                f"sequence file {source!r}: order seed {raw['seed']}"[:200] + f" must be in [0, {MAX_SEED}]"
            )
        return None, int(raw["seed"])
    if isinstance(raw, list) and raw and all(_integer(c) for c in raw):
        _class_indices(raw, source, "order")
        return list(raw), None
    raise UserError(f"sequence file {source!r}: order={raw!r}"[:200] + "; write a list of class indices or {seed: N}")
