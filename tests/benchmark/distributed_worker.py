"""What each spawned process of tests/benchmark/test_distributed.py runs: a module of its own
that imports torch and benchmark.distributed only, so that a spawned process starts fast."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
import torch.nn.functional as F

from benchmark import distributed


def collectives(rank: int, world: int, port: int, out: str) -> None:
    """In each spawned process: the weighted gradient sum against one process's, and the gathers."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    distributed.init("cpu")
    torch.manual_seed(0)
    model = torch.nn.Linear(6, 3)
    x, y = torch.randn(5, 6), torch.tensor([0, 1, 2, 1, 0])  # 5 images: shares of 3 and 2
    full = torch.autograd.grad(F.cross_entropy(model(x), y) + model.weight.square().sum(), model.weight)[0]
    lo, hi = distributed.shard(len(x))
    (F.cross_entropy(model(x[lo:hi]), y[lo:hi]) + model.weight.square().sum()).backward()
    distributed.reduce_gradients(model.parameters(), (hi - lo) / len(x))
    gathered = distributed.gather_rows(x[lo:hi] * 2, len(x))
    result = {
        "grad_error": float((model.weight.grad - full).abs().max()),
        "gathered": bool(torch.equal(gathered, x * 2)),
        "shared": distributed.share(rank * 10 + 1),
        "all_true": distributed.all_true(torch.tensor(rank == 0)),
    }
    if rank == 1:
        Path(out).write_text(json.dumps(result))
    distributed.finish()
