"""Validation splits of the built-in tasks: there only when asked, train and test unchanged otherwise."""

import torch

from tasks import TASKS
from tasks.base import TaskContext
from tasks.digits import render_digits


def test_digits_validation_split_is_apart_from_train_and_only_there_when_asked():
    plain = TASKS.get("digits")(TaskContext())
    tuned = TASKS.get("digits")(TaskContext(val=True))
    assert plain.val is None and (len(plain.train), len(plain.test)) == (1000, 500)
    assert (len(tuned.train), len(tuned.val), len(tuned.test)) == (1000, 297, 500)
    assert torch.equal(tuned.train.images, plain.train.images) and torch.equal(tuned.test.images, plain.test.images)
    # the three splits are the 1,797 images, each in exactly one of them
    every = torch.cat([tuned.train.images, tuned.val.images, tuned.test.images]).flatten(1)
    assert sorted(row.numpy().tobytes() for row in every) == sorted(
        row.numpy().tobytes() for row in render_digits()[0].flatten(1)
    )


def test_procedural_tasks_render_a_separate_val_split():
    plain = TASKS.get("shapes")(TaskContext(train_limit=32, test_limit=16))
    tuned = TASKS.get("shapes")(TaskContext(train_limit=32, test_limit=16, val=True))
    assert plain.val is None and len(tuned.val) == 16
    assert torch.equal(tuned.train.images, plain.train.images) and torch.equal(tuned.test.images, plain.test.images)
    assert not torch.equal(tuned.val.images, tuned.test.images)
