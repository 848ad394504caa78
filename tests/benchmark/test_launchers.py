"""Local sweep workers and GPUs: one GPU per worker, taken from what this process may see;
on a one-GPU machine the workers take turns (one worker)."""

import contextlib
import logging
import os
import queue
import warnings

import pytest

from benchmark.run import launchers


@contextlib.contextmanager
def worker_state_restored():
    """Undo what ``_start_worker`` (a fresh worker process's start) changes when it runs in
    pytest's own process: the root logger's level, the warning filters, the module's queue."""
    root = logging.getLogger()
    level, filters, started = root.level, list(warnings.filters), getattr(launchers, "_STARTED", None)
    try:
        yield
    finally:
        root.setLevel(level)
        warnings.filters[:] = filters
        launchers._STARTED = started


@pytest.fixture
def worker_start_in_this_process(monkeypatch):
    """A worker start in this process, undone after the test, and with no thread left
    watching for the exit of its parent (pytest itself)."""
    monkeypatch.setattr(launchers, "exit_with_parent", lambda parent, every_s=1.0: None)
    with worker_state_restored():
        yield


def test_gpu_ids_follow_the_visible_devices(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert launchers.gpu_ids(2) == ["0", "1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3, 5,7")
    assert launchers.gpu_ids(2) == ["3", "5"]  # a worker pinned to "0" would take the wrong card


def test_two_workers_on_one_gpu_share_it_in_turn(monkeypatch):
    seen = {}
    monkeypatch.setattr(launchers, "_visible_gpus", lambda: 1)
    monkeypatch.setattr(
        launchers, "_pool", lambda configs, workers, gpus, progress: seen.update(w=workers, g=gpus) or {}
    )
    monkeypatch.setattr(launchers, "to_dict", lambda cfg: {"threads": 0})
    cell = type("Cell", (), {"key": "k", "cfg": None})()
    assert launchers.run_local([cell, cell], workers=2, progress=False) == {}
    assert seen == {"w": 1, "g": 1}


def test_each_pool_worker_pins_its_own_gpu(monkeypatch, worker_start_in_this_process):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    gpus = queue.Queue()
    for gpu in launchers.gpu_ids(2):
        gpus.put(gpu)
    pinned = []
    for _ in range(2):  # what two worker processes do at start, one after the other
        launchers._start_worker(gpus, queue.Queue())
        pinned.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert pinned == ["4", "6"]


def test_a_worker_start_here_leaves_the_session_as_it_found_it(worker_start_in_this_process):
    """What the fixture undoes is what a worker start changes (else it would guard nothing)."""
    level, filters = logging.getLogger().level, list(warnings.filters)
    with worker_state_restored():
        logging.getLogger().setLevel(logging.WARNING)
        gpus = queue.Queue()
        gpus.put(None)
        launchers._start_worker(gpus, queue.Queue())
        assert logging.getLogger().level == logging.ERROR  # the worker's quieting
    assert logging.getLogger().level == level and warnings.filters == filters
