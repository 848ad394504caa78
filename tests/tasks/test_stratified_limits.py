"""Image limits of a class-incremental dataset keep every group's share of the split, so
pooled accuracies weight the groups as the full split does (unequal groups: 100 + 10 classes)."""

from __future__ import annotations

import torch

from benchmark.loop.seen_classes import dataset_context, group_limit, split_into_groups
from tasks import TaskContext
from tasks.class_incremental import ClassIncremental
from tasks.loading import ArraySource, TaskSpec, build_task, stratified_indices
from tasks.sequences import Sequence, Stage


def _dataset(per_class: int, classes: int) -> ArraySource:
    labels = torch.arange(classes).repeat_interleave(per_class)
    return ArraySource(torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8), labels)


def test_stratified_draw_keeps_each_class_share():
    labels = torch.tensor([0] * 30 + [1] * 10 + [2] * 60)
    chosen = stratified_indices(torch.arange(100), labels, 50, seed=3)
    assert torch.bincount(labels[chosen]).tolist() == [15, 5, 30] and len(set(chosen.tolist())) == 50
    assert torch.equal(chosen, stratified_indices(torch.arange(100), labels, 50, seed=3))  # seeded
    odd = stratified_indices(torch.arange(100), labels, 7, seed=0)  # shares sum to the limit
    assert len(odd) == 7 and (torch.bincount(labels[odd], minlength=3) - torch.tensor([2.1, 0.7, 4.2])).abs().max() < 1


def test_unequal_groups_keep_the_splits_proportions_under_a_limit():
    spec = ClassIncremental("big", 2, initial=100)  # groups of 100 and 10 classes
    sequence = Sequence("cil", [Stage("big-g1", 1), Stage("big-g2", 1)], classes=spec)
    ctx = dataset_context(TaskContext(data_root="unused", test_limit=275, train_limit=100), sequence, "big")
    names = [f"c{i}" for i in range(110)]
    task = build_task(TaskSpec("big", names, ["{}"], "", ""), ctx, _dataset(50, 110), _dataset(20, 110))
    groups = split_into_groups({"big": task}, sequence)
    g1, g2 = groups["big-g1"], groups["big-g2"]
    test = [len(g.test.subset(group_limit(275, g, "test"), 2)) for g in (g1, g2)]  # as the runner caps
    assert test == [500, 50]  # 5 images a class, the split's 2000 : 200 (a cap of 275 each gave 275 : 50)
    assert torch.bincount(g1.test.labels).tolist() == [5] * 100
    train = [len(g.train.subset(group_limit(100, g, "train"), 0)) for g in (g1, g2)]
    assert train == [len(g1.train), len(g2.train)] and abs(train[0] - 10 * train[1]) <= 10
    pooled = (test[0] * 0.8 + test[1] * 0.4) / sum(test)  # group accuracies 80% and 40%
    assert abs(pooled - (2000 * 0.8 + 200 * 0.4) / 2200) < 1e-12  # as on the full split
    assert group_limit(275, task, "test") == 275  # any other task: the limit itself
