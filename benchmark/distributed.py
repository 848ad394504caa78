"""One run on several processes (``torchrun``, SLURM tasks): who this process is, and the
few collectives data-parallel training needs (docs/real_scale.md, "Several GPUs").

Every process runs the same stage loop on the same global batches: each takes a contiguous
share of every batch (``shard``), gradients are summed over the processes weighted by each
share's fraction of the batch (``reduce_gradients``: the gradient of the global batch's
mean, shares equal or not), evaluation features are computed by shares and gathered
(``gather_rows``), and process 0 alone writes. Without ``torchrun`` (no ``WORLD_SIZE`` > 1
in the environment) every function here is the one-process identity: nothing is imported
from ``torch.distributed`` and nothing waits.

The kernel layer: imports torch only, so that training and evaluation both use it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import timedelta
from typing import Any, Optional, TypeVar

import torch
import torch.nn as nn

T = TypeVar("T")

# How long a process waits at a collective for the others. Generous: process 0 alone loads
# or decodes data and writes the reports while the others wait (a hang that long means a
# peer died; torchrun ends the group when a process fails, so this is a last resort).
TIMEOUT = timedelta(minutes=int(os.environ.get("LDIFS_DIST_TIMEOUT_MIN", "120")))
BUCKET_BYTES = 32 * 2**20  # gradients are summed in flat buckets of this size (fewer collectives)


def launched() -> bool:
    """True when a launcher (torchrun, SLURM through submitit) started several processes."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    """True when this process is in a group of several (``init`` has run)."""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    if not launched():
        return 1
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_initialized() else int(os.environ["WORLD_SIZE"])


def rank() -> int:
    """This process's rank (0 before ``init`` or without a launcher: the environment's RANK)."""
    if not launched():
        return 0
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """The rank on this machine: the GPU a process trains on (torchrun's LOCAL_RANK)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def cuda_index() -> int:
    """The GPU this process trains on: its LOCAL_RANK among the machine's GPUs, or the one
    GPU it sees when the launcher gave each process its own (SLURM's per-task binding)."""
    return local_rank() if torch.cuda.device_count() > 1 else 0


def is_writer() -> bool:
    """Only process 0 writes rows, checkpoints, manifest, reports and the index."""
    return rank() == 0


def backend_for(device: str) -> str:
    """NCCL for CUDA devices, gloo for the CPU (``device`` is the config's: auto, cpu, cuda...)."""
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "nccl" if cuda else "gloo"


def init(device: str) -> Optional[str]:
    """Join the group the launcher started (a no-op without one); returns the backend."""
    if not launched():
        return None
    import torch.distributed as dist

    backend = backend_for(device)
    if not dist.is_initialized():
        if backend == "nccl":
            torch.cuda.set_device(cuda_index())  # before NCCL: each process owns one GPU
        dist.init_process_group(backend, timeout=TIMEOUT)
    return backend


def backend() -> Optional[str]:
    """The group's backend ("gloo", "nccl"), or None for one process."""
    if not active():
        return None
    import torch.distributed as dist

    return str(dist.get_backend())


def finish() -> None:
    """Leave the group (at the end of a run)."""
    if active():
        import torch.distributed as dist

        dist.destroy_process_group()


def barrier() -> None:
    if active():
        import torch.distributed as dist

        dist.barrier()


def share(value: T) -> T:
    """Process 0's ``value`` on every process (a decision only process 0 can make, e.g. what
    it found on disk); other processes' ``value`` is ignored."""
    if not active():
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(n: int, world: Optional[int] = None, index: Optional[int] = None) -> tuple[int, int]:
    """This process's contiguous share ``[lo, hi)`` of ``n`` items: sizes differ by at most
    one, the larger first (``torch.tensor_split``'s rule), in rank order."""
    world = world_size() if world is None else world
    index = rank() if index is None else index
    size, extra = divmod(n, world)
    lo = index * size + min(index, extra)
    return lo, lo + size + (index < extra)


def reduce_gradients(params: Iterable[nn.Parameter], weight: float) -> None:
    """Every parameter's gradient replaced by the sum over processes of ``weight`` times
    it: with ``weight`` = this share's fraction of the global batch, the gradient of the
    global batch's mean loss (per-share means of a mean loss, and penalties that are the
    same on every process, weighted by fractions that sum to 1)."""
    if not active():
        return
    import torch.distributed as dist

    grads = [p.grad for p in params if p.grad is not None]
    for bucket in _buckets(grads):
        flat = torch.cat([g.reshape(-1) for g in bucket]).mul_(weight)
        dist.all_reduce(flat)
        for g, part in zip(bucket, flat.split([g.numel() for g in bucket])):
            g.copy_(part.view_as(g))


def _buckets(grads: list[torch.Tensor]) -> Iterable[list[torch.Tensor]]:
    """Gradients grouped by dtype and device, about BUCKET_BYTES a group, in a fixed order."""
    bucket: list[torch.Tensor] = []
    size = 0
    for g in grads:
        if bucket and (size + g.numel() * g.element_size() > BUCKET_BYTES or _kind(g) != _kind(bucket[0])):
            yield bucket
            bucket, size = [], 0
        bucket.append(g)
        size += g.numel() * g.element_size()
    if bucket:
        yield bucket


def _kind(t: torch.Tensor) -> tuple[torch.dtype, torch.device]:
    return t.dtype, t.device


def weighted_sum(value: torch.Tensor, weight: float) -> torch.Tensor:
    """Sum over processes of ``weight * value`` (a loss of the global batch from its shares)."""
    if not active():
        return value
    import torch.distributed as dist

    out = value.detach().float().reshape(1) * weight
    dist.all_reduce(out)
    return out[0]


def all_true(flag: torch.Tensor) -> bool:
    """True when ``flag`` (a bool tensor on the device) is true on every process."""
    if not active():
        return bool(flag)
    import torch.distributed as dist

    value = flag.detach().to(torch.int32).reshape(1)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value[0])


@torch.no_grad()
def broadcast_module(module: nn.Module) -> None:
    """Process 0's parameters and buffers in place on every process (a stage starts from
    one model everywhere, whatever float differences per-process head rules left)."""
    if not active():
        return
    import torch.distributed as dist

    for tensor in [*module.parameters(), *module.buffers()]:
        dist.broadcast(tensor.data, src=0)


@torch.no_grad()
def average_batch_norm(module: nn.Module) -> None:
    """BatchNorm's running mean and variance averaged over processes: each process
    normalised its own share of every batch, so each tracked its own statistics."""
    if not active():
        return
    import torch.distributed as dist

    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
            for buffer in (m.running_mean, m.running_var):
                dist.all_reduce(buffer.data)
                buffer.data.div_(world_size())


def gather_rows(part: torch.Tensor, n: int) -> torch.Tensor:
    """The ``n`` rows whose shares (``shard(n)``) the processes computed, in order, on every process."""
    if not active():
        return part
    import torch.distributed as dist

    world = world_size()
    longest = shard(n, world, 0)[1]  # the first share is the largest
    padded = part.new_zeros((longest, *part.shape[1:]))
    padded[: len(part)] = part
    pieces = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(pieces, padded.contiguous())
    sizes = [hi - lo for lo, hi in (shard(n, world, r) for r in range(world))]
    return torch.cat([piece[:size] for piece, size in zip(pieces, sizes)])


def describe() -> dict[str, Any]:
    """What the manifest records of the processes that ran."""
    return {"world_size": world_size(), "backend": backend()}
