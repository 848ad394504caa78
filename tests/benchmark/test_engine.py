"""The engine's optional Avalanche loggers and its device-resident data path."""

import torch
from avalanche.logging import CSVLogger

from benchmark.loop.scheduler import make_stream
from benchmark.training.engine import DeviceBatchLoader, _tensors_of, make_evaluator
from tasks.base import Split, Task


def test_loggers_flag_builds_avalanches_own_loggers(tmp_path):
    evaluator = make_evaluator(["csv"], str(tmp_path))
    assert [type(lg) for lg in evaluator.loggers] == [CSVLogger]
    assert (tmp_path / "csv").is_dir()
    assert make_evaluator([], None).loggers == []


def test_stage_tensors_come_straight_from_the_dataset():
    split = Split(torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8), torch.arange(10) % 3)
    exp = make_stream([Task("t", ["a", "b", "c"], ["{}"], split, split)], None, 0)[0]
    images, labels, tasks = _tensors_of(exp.dataset.train())
    assert torch.equal(images, split.images) and torch.equal(labels, split.labels) and set(tasks.tolist()) == {0}
    loader = DeviceBatchLoader.from_dataset(
        exp.dataset.train(), 4, torch.device("cpu"), torch.Generator().manual_seed(0)
    )
    batches = list(loader)
    assert loader.single_task == 0 and len(batches) == 3 and sum(len(b[0]) for b in batches) == 10
