"""The authors' 90/10 split, limits and the memory budget (tasks/loading.py)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import random_split

from benchmark.errors import UserError
from tasks.base import Split, TaskContext
from tasks.loading import (
    MEMORY_BUDGET_ENV,
    ArraySource,
    TaskSpec,
    build_task,
    check_memory_budget,
    held_out_indices,
    limit_indices,
    train_val_indices,
)


def test_train_val_split_matches_the_authors_random_split():
    # The authors' registry asserts this for MNISTVal: random_split(60000, [54000, 6000], seed 0).
    train, val = train_val_indices(60_000)
    assert (len(train), len(val)) == (54_000, 6_000)
    assert int(train[0]) == 36044
    ref_train, ref_val = random_split(range(1000), [900, 100], generator=torch.Generator().manual_seed(0))
    train, val = train_val_indices(1000)
    assert train.tolist() == list(ref_train.indices) and val.tolist() == list(ref_val.indices)


def test_val_is_capped_at_20000_images():
    train, val = train_val_indices(300_000)
    assert len(val) == 20_000 and len(train) == 280_000
    assert len(set(train.tolist()) | set(val.tolist())) == 300_000


def test_held_out_split_is_disjoint_and_seeded():
    rest, held = held_out_indices(100)
    assert len(held) == 20 and not set(rest.tolist()) & set(held.tolist())
    assert held.tolist() == held_out_indices(100)[1].tolist()


def test_limit_draws_like_split_subset():
    idx = torch.arange(50) * 3
    images = torch.zeros(50, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(50)
    split = Split(images, torch.zeros(50, dtype=torch.long)).subset(7, seed=4)
    assert (limit_indices(idx, 7, seed=4) // 3).tolist() == split.images[:, 0, 0, 0].tolist()
    assert limit_indices(idx, None, 0) is idx and limit_indices(idx, 99, 0) is idx


def _source(n: int) -> ArraySource:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return ArraySource(images, torch.arange(n) % 3)


def test_build_task_splits_limits_and_expands_grey():
    spec = TaskSpec("toy", ["a", "b", "c"], ["a {}."], "toy", "test")
    task = build_task(spec, TaskContext(), _source(40), _source(10))
    assert (len(task.train), len(task.val), len(task.test)) == (36, 4, 10)
    assert task.train.images.shape == (36, 3, 4, 4)
    seen = task.train.images[:, 0, 0, 0].tolist() + task.val.images[:, 0, 0, 0].tolist()
    assert sorted(seen) == list(range(40))
    assert task.train.labels.tolist() == [v % 3 for v in task.train.images[:, 0, 0, 0].tolist()]
    limited = build_task(spec, TaskContext(train_limit=5, test_limit=3), _source(40), _source(10))
    assert (len(limited.train), len(limited.val), len(limited.test)) == (5, 3, 3)


def test_memory_budget_refuses_with_the_limits_to_set(monkeypatch):
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1")
    check_memory_budget("small", {"train": 1000}, 224)
    with pytest.raises(UserError) as err:
        check_memory_budget("food101", {"train": 68175, "val": 7575, "test": 25250}, 224)
    message = str(err.value)
    assert "\n" not in message and "1.0 GiB" in message and "train.train_limit" in message
    assert "eval.test_limit" in message and MEMORY_BUDGET_ENV in message
