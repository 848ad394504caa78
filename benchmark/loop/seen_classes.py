"""What the scheduler does differently in the class-incremental scenario.

One head (task label 0) over every class seen so far, grown at each stage by the rows of the
stage's classes; training labels are positions in the class order (a group's label + its
offset), and every experience has task label 0, so replay buffers, LwF's previous classes
and the engine's single-task forward all see one growing classifier. Evaluation has no task
identity: each seen group's test images are scored by the head over all seen classes (and
the zero-shot kind by the text embeddings of all seen class names).
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import torch
import torch.nn as nn

from benchmark.errors import UserError
from benchmark.evaluation.heads import ShiftedHead
from methods import METHODS
from tasks import Sequence, Task, TaskContext
from tasks.class_incremental import ClassGroup, group_tasks

HEAD = 0  # the task label of the one head


def check_scenario(spec: str, sequence: Sequence) -> None:
    """Refuse, in one line and before any training, a method that cannot run this scenario."""
    scenario = "class_incremental" if sequence.class_incremental else "task_incremental"
    for part in spec.split("+"):
        why = METHODS.get(part).refuse(scenario)
        if why:
            raise UserError(
                f"method {part!r} cannot run the {scenario.replace('_', '-')} sequence {sequence.name!r}: {why}"
            )


def dataset_context(ctx: TaskContext, sequence: Sequence, name: str) -> TaskContext:
    """Limits (train.train_limit, eval.test_limit) count per group on average: the dataset
    is loaded with limit x steps images, drawn per class (``TaskContext.stratified``) so that
    every group keeps its share of the split, as unequal groups (TinyImageNet's 100 classes,
    then 10 a step) have in the full split; pooled accuracies then weight groups alike."""
    if not sequence.class_incremental or name != sequence.classes.dataset:
        return ctx
    steps = sequence.classes.steps
    scale = lambda n: None if n is None else n * steps  # noqa: E731
    return dataclasses.replace(
        ctx, train_limit=scale(ctx.train_limit), test_limit=scale(ctx.test_limit), stratified=True
    )


def split_into_groups(tasks: dict[str, Task], sequence: Sequence) -> dict[str, Task]:
    """The loaded tasks with the class-incremental dataset replaced by its groups, each told
    its share of every loaded split (``group_limit``)."""
    dataset = sequence.classes.dataset
    groups = group_tasks(tasks[dataset], sequence.classes)
    steps = sequence.classes.steps
    for group in groups.values():
        for split in ("train", "test", "val"):
            whole, part = getattr(tasks[dataset], split), getattr(group, split)
            if whole is not None and part is not None and len(whole):
                group.limit_scale[split] = steps * len(part) / len(whole)
    others = {name: task for name, task in tasks.items() if name != dataset}
    return {**groups, **others}


def group_limit(limit: Optional[int], task: Task, split: str) -> Optional[int]:
    """The cap a per-task limit puts on ``task``'s ``split``: the limit itself, except for a
    class group, whose cap is its share of limit x steps (what the dataset was loaded with,
    ``dataset_context``), so groups keep the split's proportions instead of each being cut
    to the same count."""
    scale = task.limit_scale.get(split) if isinstance(task, ClassGroup) else None
    if limit is None or scale is None:
        return limit
    return max(1, round(limit * scale))


def set_group_rows(model: nn.Module, group: ClassGroup, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    """Put the group's rows into the one head: appended when the group is new, replaced when
    it already has rows (a probe refit after the stage). Rows of other classes are kept as
    they are, bit for bit."""
    k = len(group.classnames)
    bias = bias if bias is not None else torch.zeros(k, device=weight.device)
    key = str(HEAD)
    if key not in model.heads:  # type: ignore[operator]
        model.add_head(HEAD, weight, bias)  # type: ignore[operator]
        return
    old = model.heads[key]  # type: ignore[index]
    if old.out_features not in (group.offset, group.offset + k):  # type: ignore[union-attr]  # groups arrive in order, each once
        raise ValueError(f"head has {old.out_features} rows; group {group.name} starts at row {group.offset}")  # type: ignore[union-attr]
    keep = group.offset
    with torch.no_grad():
        w = torch.cat([old.weight[:keep], weight.to(old.weight)])  # type: ignore[union-attr]
        b = torch.cat([old.bias[:keep], bias.to(old.bias)])  # type: ignore[union-attr]
    model.add_head(HEAD, w, b)  # type: ignore[operator]


def seen_heads(model: nn.Module, sets: dict, groups: list[str]) -> tuple[dict, dict]:
    """(head, zero-shot) classifiers of every seen group over all seen classes, their logits
    shifted so that a group's own labels index them (see ``ShiftedHead``)."""
    head = model.heads[str(HEAD)]  # type: ignore[index]
    zeroshot = torch.cat([sets[g].zeroshot for g in groups])
    offsets = {g: sets[g].task.offset for g in groups}
    heads = {g: ShiftedHead(head, offsets[g]) for g in groups}  # type: ignore[arg-type]
    zs = {g: ShiftedHead(lambda f, w=zeroshot: f @ w.T, offsets[g]) for g in groups}  # type: ignore[misc]
    return heads, zs
