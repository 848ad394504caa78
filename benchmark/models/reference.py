"""Faster taps of a frozen reference tower (LDIFS's extra forward pass per step).

LDIFS (Mukhoti et al., TMLR 2024, Eq. 2) compares the trained tower's intermediate features
with those of a frozen copy, so every step pays one more forward pass. Three ways to pay
less, each exact up to float rounding (docs/performance.md):

- a second CUDA stream: the reference's forward is queued before the trained tower's and
  runs beside it on an under-used GPU; the penalty waits for it (``ReferenceRunner``);
- a CUDA graph of the reference's forward, replayed from a static input buffer, which
  removes the per-kernel launch cost of a small-matrix ViT (``ReferenceRunner``);
- reuse across epochs: without augmentation and without batch-dependent layers the
  reference's taps of an image never change within a stage, so they are computed once
  per image and read back afterwards (``TapCache``), on the device if they fit a budget,
  else in pinned host memory, else recomputed.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Optional

import torch
import torch.nn as nn

from benchmark.models.taps import TapRecorder

log = logging.getLogger("ldifs_bench.ldifs")
MAX_GRAPHS = 2  # batch shapes captured per stage: the full batch and an epoch's last one


def _uncached(ctx):
    """The engine's autocast context with its cast cache off: a CUDA graph must capture the
    weights' casts, not read casts cached outside it (PyTorch's CUDA graph notes)."""
    if isinstance(ctx, torch.autocast):
        ctx._cache_enabled = False
    return ctx


class ReferenceRunner:
    """Runs the frozen reference on a batch and hands back its taps.

    ``launch(x)`` queues the forward pass (on a side stream when ``stream`` and on CUDA) and
    ``result()`` makes the current stream wait for it; on the CPU both run in order, which
    gives the same numbers as the plain path. With ``graph`` on CUDA the forward is replayed
    from a CUDA graph per batch shape (at most ``MAX_GRAPHS``; other shapes run eagerly).
    """

    def __init__(
        self,
        reference: nn.Module,
        recorder: TapRecorder,
        device: torch.device,
        autocast: Callable[[], AbstractContextManager],
        stream: bool,
        graph: bool,
    ) -> None:
        self.reference, self.recorder, self.device, self.autocast = reference, recorder, device, autocast
        cuda = device.type == "cuda"
        self.side = torch.cuda.Stream(device) if (stream and cuda) else None
        self.graph = graph and cuda
        self._graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, list[torch.Tensor]]] = {}
        self._pending: Optional[list[torch.Tensor]] = None
        self._pending_is_static = False  # a graph's outputs: its own memory pool, never freed mid-stage

    def launch(self, x: torch.Tensor) -> None:
        self._pending_is_static = self.graph and self._graphable(x)
        if self.side is None:
            self._pending = self._forward(x)
            return
        main = torch.cuda.current_stream(self.device)
        self.side.wait_stream(main)  # x was written (preprocessed) on the main stream
        with torch.cuda.stream(self.side):
            x.record_stream(self.side)  # x's memory is not reused while the side stream reads it
            self._pending = self._forward(x)

    def result(self) -> list[torch.Tensor]:
        taps, self._pending = self._pending, None
        if taps is None:
            raise RuntimeError("ReferenceRunner.result() before launch()")
        if self.side is not None:
            main = torch.cuda.current_stream(self.device)
            main.wait_stream(self.side)  # the one synchronisation: before the penalty
            for t in taps if not self._pending_is_static else ():
                t.record_stream(main)  # allocated on the side stream, read on the main one
        return taps

    def _graphable(self, x: torch.Tensor) -> bool:
        return (tuple(x.shape), x.dtype) in self._graphs or len(self._graphs) < MAX_GRAPHS

    def _forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.graph and self._graphable(x):
            return self._replay((tuple(x.shape), x.dtype), x)
        return self._eager(x)

    def _eager(self, x: torch.Tensor, cache: bool = True) -> list[torch.Tensor]:
        with torch.no_grad(), self.autocast() if cache else _uncached(self.autocast()):
            self.reference(x)  # the recorder's hooks keep the taps
        return self.recorder.take()

    def _replay(self, key: tuple, x: torch.Tensor) -> list[torch.Tensor]:
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        static_x, graph, outs = self._graphs[key]
        static_x.copy_(x)
        graph.replay()
        return list(outs)  # the graph's static outputs, rewritten by the next replay

    def _capture(self, x: torch.Tensor):
        """Warm up on a side stream, then capture one forward (PyTorch's CUDA graph recipe)."""
        static_x = x.detach().clone()
        warm = torch.cuda.Stream(self.device)
        warm.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(warm):
            for _ in range(2):  # cuBLAS/cuDNN workspaces and lazy init happen outside capture
                self._eager(static_x, cache=False)
        torch.cuda.current_stream(self.device).wait_stream(warm)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            outs = self._eager(static_x, cache=False)
        return static_x, graph, outs


def stochastic_or_batch_dependent(tower: nn.Module) -> list[str]:
    """Layers whose output for an image depends on the rest of the batch (BatchNorm in
    batch-statistics mode, as LDIFS's reference runs it) or on chance (dropout): their taps
    cannot be reused across epochs."""
    found = []
    for name, m in tower.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            found.append(f"{name or 'tower'} (BatchNorm)")
        elif isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0:
            found.append(f"{name} (dropout)")
        elif type(m).__name__ == "PatchDropout" and getattr(m, "prob", 0) > 0:
            found.append(f"{name} (patch dropout)")
    return found


def _available_host_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


class TapCache:
    """The reference's taps of every training image of one stage, keyed by dataset index.

    Filled while the first epoch computes them; a batch whose images are all filled is read
    back instead of recomputed. The storage tier is chosen at the first fill from the taps'
    size: ``device`` (under ``budget_bytes``, default half the device's free memory),
    ``pinned host`` (CUDA only, under half the available RAM) or ``recompute``.
    """

    def __init__(self, n: int, device: torch.device, budget_bytes: int = 0) -> None:
        self.n, self.device, self.budget = n, device, budget_bytes
        self.tier: Optional[str] = None
        self.store: list[torch.Tensor] = []
        self.filled = torch.zeros(n, dtype=torch.bool)  # on the CPU: lookups never sync
        self._staging: list[torch.Tensor] = []
        self._copied: Optional[torch.cuda.Event] = None

    def lookup(self, idx: torch.Tensor, idx_dev: torch.Tensor) -> Optional[list[torch.Tensor]]:
        """The taps of the batch at dataset positions ``idx`` (CPU) / ``idx_dev`` (device), or None."""
        if not self.store or not bool(self.filled[idx].all()):
            return None
        if self.tier == "device":
            return [s.index_select(0, idx_dev) for s in self.store]
        if self._copied is not None:
            self._copied.synchronize()  # the staging buffers' previous copy has left
        outs = []
        for s, buf in zip(self.store, self._staging):
            part = torch.index_select(s, 0, idx, out=buf[: len(idx)])
            outs.append(part.to(self.device, non_blocking=True))
        self._copied = torch.cuda.Event()
        self._copied.record()
        return outs

    def fill(self, idx: torch.Tensor, idx_dev: torch.Tensor, taps: list[torch.Tensor]) -> None:
        if self.tier is None:
            self._allocate(taps)
        if self.tier == "recompute":
            return
        for s, t in zip(self.store, taps):
            if self.tier == "device":
                s.index_copy_(0, idx_dev, t.detach())
            else:
                s.index_copy_(0, idx, t.detach().to("cpu"))
        self.filled[idx] = True

    def _allocate(self, taps: list[torch.Tensor]) -> None:
        per_image = sum(t[0].numel() * t.element_size() for t in taps)
        need = self.n * per_image
        cuda = self.device.type == "cuda"
        if cuda:
            budget = self.budget or torch.cuda.mem_get_info(self.device)[0] // 2
        else:
            budget = self.budget or _available_host_bytes() // 2
        tiers = [("device", budget)] + ([("pinned host", _available_host_bytes() // 2)] if cuda else [])
        for tier, limit in tiers:
            if need <= limit and self._try_allocate(tier, taps):
                break
        else:
            self.tier = "recompute"
        log.info(
            "LDIFS reference taps: %s tier (%.2f GB for %d images; budget %.2f GB)",
            self.tier,
            need / 2**30,
            self.n,
            budget / 2**30,
        )

    def _try_allocate(self, tier: str, taps: list[torch.Tensor]) -> bool:
        try:
            if tier == "device":
                self.store = [t.new_empty((self.n, *t.shape[1:])) for t in taps]
            else:
                self.store = [torch.empty((self.n, *t.shape[1:]), dtype=t.dtype, pin_memory=True) for t in taps]
                self._staging = [torch.empty(t.shape, dtype=t.dtype, pin_memory=True) for t in taps]
        except (RuntimeError, torch.cuda.OutOfMemoryError):
            self.store, self._staging = [], []
            return False
        self.tier = tier
        return True

    def release(self) -> None:
        self.store, self._staging, self._copied = [], [], None
