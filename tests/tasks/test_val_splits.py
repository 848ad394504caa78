"""Validation splits of the built-in tasks: there only when asked, train and test unchanged otherwise."""

import torch

from tasks import TASKS
from tasks.base import TaskContext


def test_digits_hold_out_the_last_quarter_of_train_only_when_asked():
    plain = TASKS.get("digits")(TaskContext())
    tuned = TASKS.get("digits")(TaskContext(val=True))
    assert plain.val is None and len(plain.train) == 1200
    assert (len(tuned.train), len(tuned.val)) == (900, 300)
    assert torch.equal(tuned.test.images, plain.test.images)
    assert torch.equal(tuned.train.images, plain.train.images[:900])
    assert torch.equal(tuned.val.images, plain.train.images[900:])


def test_procedural_tasks_render_a_separate_val_split():
    plain = TASKS.get("shapes")(TaskContext(train_limit=32, test_limit=16))
    tuned = TASKS.get("shapes")(TaskContext(train_limit=32, test_limit=16, val=True))
    assert plain.val is None and len(tuned.val) == 16
    assert torch.equal(tuned.train.images, plain.train.images) and torch.equal(tuned.test.images, plain.test.images)
    assert not torch.equal(tuned.val.images, tuned.test.images)
