"""Local sweep workers and GPUs: one GPU per worker, taken from what this process may see;
on a one-GPU machine the workers take turns (one worker)."""

import os
import queue

from benchmark.run import launchers


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


def test_each_pool_worker_pins_its_own_gpu(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,6")
    gpus = queue.Queue()
    for gpu in launchers.gpu_ids(2):
        gpus.put(gpu)
    pinned = []
    for _ in range(2):  # what two worker processes do at start, one after the other
        launchers._start_worker(gpus, queue.Queue())
        pinned.append(os.environ["CUDA_VISIBLE_DEVICES"])
    assert pinned == ["4", "6"]
